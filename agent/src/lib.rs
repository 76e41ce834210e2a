//! `cove-agent` — Cove's data plane. Runs [`devfiles::EnvironmentPlan`]s on a
//! Docker engine as pods: one infra container owns the network namespace and
//! publishes the endpoints, every container component joins it, named
//! volumes hold `/projects` and the devfile volumes.
//!
//! Invariants: only this crate talks to Docker (through bollard). Every
//! Docker object it creates carries the `cove.env` label, and it never
//! touches an object without Cove's labels. It knows nothing of HTTP, the
//! server's store or devfile syntax: the plan is its only input.

pub mod broker;
pub mod commands;
pub mod environment;
pub mod gateway;
pub mod job_http;
pub mod job_worker;
pub mod jobs;
pub mod mask;
pub mod pod;
pub mod private_net;
pub mod sources;
pub mod worker;

pub use pod::{
    ContainerState, ExecOutput, PodError, PodSpec, PodStatus, PublishedEndpoint, Runtime,
};
