//! The engine's model, at its bottom: the types every use case speaks — entities, the queue
//! messages (a sync job or a webhook job), a pull's checkpoint and its tally. It imports nothing
//! else from the engine (only `mapping`, `store`, serde, chrono), so anything may import it.

mod checkpoint;
mod entity;
mod job;
mod run;
mod tally;
mod webhook;

pub use checkpoint::Checkpoint;
pub use entity::{Entity, EntitySwitch};
pub use job::{JobMessage, SyncJob};
pub use run::RUN_SCOPE;
pub use tally::Tally;
pub use webhook::{Change, JobKind, Notice, WebhookJob};
