//! Repositories: the REST handlers of `/api/v1/repos/…` (`http.rs`). Git's smart HTTP
//! lives in `crate::git`, retention in `crate::retention`; `tree.rs` lists a directory at a
//! commit for the web UI's code browser.

mod http;
mod tree;

pub use http::*;
pub use tree::{read_tree, MAX_TREE_ENTRIES};
