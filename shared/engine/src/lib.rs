//! The sync engine: everything the Lambda functions do, as plain library code over small ports.
//! It knows no HTTP: the service API's edge (routing, authentication, bodies, statuses, the error
//! shape) is the `service-api` crate above it, which calls the use cases here with typed inputs.
//!
//! Use cases (called by `service-api`, the scheduler and the pull functions):
//! - [`connections`] — R-CON-*: live-checked connections, sealed secrets (`ConnectionBody` in,
//!   `Saved` / `ConnectionView` / `Disconnected` out).
//! - [`runs`] — the "Sync" button and run reports (R-CON-5, R-SYN-5): `SyncRequest` in, `Started`
//!   or a `RunReport` out.
//! - [`jobs`] — pull jobs on SQS, continuations, the schedule's fan-out (R-SYN-7).
//! - [`pull`] — KiotViet → Abaha pulls with cursor, lease, checkpoints, content hashes (R-SYN-1…4).
//! - [`push`] — Abaha → KiotViet order and customer pushes (R-ORD-*, R-CUS-2/3): `AbahaOrder` in,
//!   `OrderPushed` out; `AbahaCustomer` in, `CustomerPushed` out.
//! - [`webhooks`] — KiotViet webhooks (R-SYN-8): a `Delivery` (raw body, signature, event) in, a
//!   `WebhookAnswer` out; the jobs they queue are applied by the pull functions.
//! - [`links`] — every ID-map keying rule (keys and link hashes), for pushes and pulls alike.
//! - [`model`] — the types at the bottom: entities, queue messages, checkpoints, tallies.
//!
//! Below them:
//! - [`error`] — [`EngineError`]: what a use case answers when it cannot, with the contract code
//!   ([`ErrorCode`]) that `service-api` maps to a status; [`JobError`] for the pull jobs.
//! - [`service`] — the shared clients and ports, built once per container.
//! - [`settings`] — the configuration (CONTRACTS.md §3).

pub mod connections;
pub mod error;
pub mod jobs;
pub mod links;
pub mod metrics;
pub mod model;
pub mod prefetch;
pub mod pull;
pub mod push;
pub mod queues;
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
