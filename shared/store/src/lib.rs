//! Persistence and messaging for the sync service: the PORTS (one small async trait per capability)
//! and their adapters.
//!
//! - [`ports`] — the traits the engine and the functions depend on; take only the capability you need.
//! - [`dynamo::DynamoStore`] — every DynamoDB-backed port on one single table (`pk`/`sk` strings,
//!   TTL attribute `expires_at`); item shapes are documented on each port's adapter module.
//! - [`KmsSealer`] — client secrets sealed with KMS, bound to the shop by encryption context.
//! - [`SqsQueue`] — the job queue on SQS.
//! - [`memory`] — in-memory fakes of every port, held to the same contract tests as the adapters.
//! - [`provision`] — idempotent creation of the table, key and queues (local stack, tests).
//!
//! No AWS SDK type crosses this crate's public API except the clients and `SdkConfig` that callers
//! build the adapters from.

pub mod dynamo;
mod error;
mod kms;
pub mod memory;
pub mod model;
pub mod ports;
pub mod provision;
pub mod report;
mod sqs;
pub mod testing;
mod token;

pub use dynamo::DynamoStore;
pub use error::StoreError;
pub use kms::KmsSealer;
pub use memory::{MemoryQueue, MemorySealer, MemoryStore};
pub use model::{
    BudgetAnswer, Checkpoint, Claim, Connection, ConnectionPage, Cursor, IdKind, IdLink,
    LeaseAnswer, QueueUrls, QueuedJob, SealedSecret, Switches,
};
pub use ports::{
    BudgetStore, CheckpointStore, ConnectionStore, CursorStore, IdMapStore, IdempotencyStore,
    JobQueue, LeaseStore, RUN_LIST_CAP, RunEnd, RunStore, SecretSealer, Store,
};
pub use sqs::SqsQueue;
pub use token::{hash_token, new_token, token_matches};

/// Shared AWS configuration for every client, loaded once per process.
///
/// Honours the SDK's own environment (`AWS_REGION`, credentials, `AWS_ENDPOINT_URL` and the
/// per-service `AWS_ENDPOINT_URL_DYNAMODB` …), so a local stand-in is reached without code changes.
pub async fn aws_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await
}
