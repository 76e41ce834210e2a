//! Repositories: the REST handlers of `/api/v1/repos/…` (`http.rs`). Git's smart HTTP
//! lives in `crate::git`, retention in `crate::retention`.

mod http;

pub use http::*;
