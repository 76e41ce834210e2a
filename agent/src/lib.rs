//! `cove-agent` — Cove's data plane. Runs [`devfiles::EnvironmentPlan`]s on a
//! Docker engine as pods (one infra container owns the network namespace and
//! publishes the endpoints, every container component joins it, named
//! volumes hold `/projects` and the devfile volumes), runs workflow jobs in
//! fresh containers on per-job private networks, and brokers AWS credentials
//! for them.
//!
//! Invariants: only this crate talks to Docker (through bollard). Every
//! Docker object it creates carries a Cove label (`cove.env`, `cove.job`),
//! and it never touches an object without one. It knows nothing of the
//! server's store, of its REST API beyond the agent protocol and agent
//! registration (`job_http`), or of devfile/workflow syntax: plans and job
//! specs are its inputs. It only dials out to the server; its only HTTP
//! server is the per-job endpoint gateway. The standalone binary is
//! `cove-agent` (`src/bin/cove-agent.rs`, configuration in [`config`]).

pub mod backend;
pub mod bounded;
pub mod broker;
pub mod commands;
pub mod config;
pub mod creds;
pub mod dotfiles;
pub mod editor;
pub mod env_net;
pub mod environment;
pub mod gateway;
pub mod job_http;
pub mod job_pool;
pub mod job_sandbox;
pub mod job_worker;
pub mod jobs;
pub mod labels;
pub mod link;
pub mod mask;
pub mod metrics;
pub mod pod;
pub mod prebuild;
pub mod private_net;
pub mod sources;
pub mod worker;

pub use pod::{
    ContainerState, ExecOutput, PodError, PodSpec, PodStatus, PublishedEndpoint, Runtime,
};
