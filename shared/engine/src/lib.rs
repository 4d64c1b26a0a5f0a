//! The sync engine: everything the Lambda functions do, as plain library code over small ports.
//!
//! - [`api`] — the service API router (CONTRACTS.md §1), framework-neutral.
//! - [`connections`] — R-CON-*: live-checked connections, sealed secrets.
//! - [`runs`] — the "Sync" button and run reports (R-CON-5, R-SYN-5).
//! - [`jobs`] — pull jobs on SQS, continuations, the schedule's fan-out (R-SYN-7).
//! - [`pull`] — KiotViet → Abaha pulls with cursor, lease, checkpoints, content hashes (R-SYN-1…4).
//! - [`push`] — Abaha → KiotViet order and customer pushes (R-ORD-*, R-CUS-2/3).
//! - [`service`] — the shared clients and ports, built once per container.

pub mod connections;
pub mod error;
pub mod jobs;
pub mod metrics;
pub mod prefetch;
pub mod pull;
pub mod push;
pub mod runs;
pub mod service;
pub mod settings;
pub mod sweep;
pub mod telemetry;
pub mod webhooks;

pub use error::{EngineError, ErrorCode, JobError};
pub use jobs::{Entity, SyncJob, fan_out, handle_job};
pub use service::{Service, ServiceParts};
pub use settings::Settings;
