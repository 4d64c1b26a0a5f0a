//! The ports: one small async trait per capability, so a handler asks only for what it uses.
//!
//! Every method answers `Result<_, StoreError>`; a lost race on a conditional write is an answer
//! (`false`, `HeldBy`, `InProgress` …), never an error. Adapters: [`DynamoStore`](crate::DynamoStore),
//! [`KmsSealer`](crate::KmsSealer), [`SqsQueue`](crate::SqsQueue); fakes in [`memory`](crate::memory).

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::Value;

use mapping::api::{Entity, EntityReport, ManualAction, PartState, RunError, RunReport, RunState};

use crate::StoreError;
use crate::model::{
    BudgetAnswer, Checkpoint, Claim, Connection, ConnectionPage, Cursor, IdKind, IdLink,
    LeaseAnswer, QueuedJob, SealedSecret,
};

/// Connections, one per shop (R-CON-1).
#[async_trait]
pub trait ConnectionStore: Send + Sync {
    async fn get_connection(&self, shop: &str) -> Result<Option<Connection>, StoreError>;
    /// Creates or replaces the shop's connection.
    async fn put_connection(&self, connection: &Connection) -> Result<(), StoreError>;
    /// Removes the connection and with it the sealed secret; answers whether one existed.
    /// Cursors, ID maps and run reports are kept.
    async fn delete_connection(&self, shop: &str) -> Result<bool, StoreError>;
    /// One page of connections in shop-id order, starting after the shop `after` (the previous
    /// page's `next`), for the scheduler's fan-out: it starts a page's shops before it reads the
    /// next, so its memory does not grow with the number of shops. An unreadable stored
    /// connection is logged and left out rather than failing the page.
    async fn list_connections_page(
        &self,
        after: Option<&str>,
    ) -> Result<ConnectionPage, StoreError>;
    /// The shop whose current shop token hashes to `token_hash`, in one read whatever the number
    /// of shops (a wrong token must not cost a scan). Kept by `put_connection` and
    /// `delete_connection`; a rotated token no longer names its shop.
    async fn shop_of_token(&self, token_hash: &str) -> Result<Option<String>, StoreError>;
}

/// Seals secrets at rest for one shop (R-CON-4); opening with another shop's id fails.
#[async_trait]
pub trait SecretSealer: Send + Sync {
    async fn seal(&self, shop: &str, secret: &SecretString) -> Result<SealedSecret, StoreError>;
    /// Fails with [`StoreError::SecretRejected`] for another shop's (or a damaged) sealed secret.
    async fn open(&self, shop: &str, sealed: &SealedSecret) -> Result<SecretString, StoreError>;
}

/// Incremental-sync cursors per (shop, entity) (R-SYN-1, R-SYN-2).
#[async_trait]
pub trait CursorStore: Send + Sync {
    async fn get_cursor(&self, shop: &str, entity: &str) -> Result<Option<Cursor>, StoreError>;
    /// Moves the cursor to `to` unless that is behind the stored one: a cursor never moves
    /// backwards (R-SYN-2). Answers whether it was written (`true` also when `to` equals it).
    async fn advance_cursor(
        &self,
        shop: &str,
        entity: &str,
        to: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Forgets the cursor, so the next run reads everything (e.g. the shop reconnected elsewhere).
    async fn reset_cursor(&self, shop: &str, entity: &str) -> Result<(), StoreError>;
}

/// Resume points of running pulls per (shop, entity) (R-SYN-2). A stored checkpoint that does
/// not read as a [`Checkpoint`] is answered as absent (see there).
#[async_trait]
pub trait CheckpointStore: Send + Sync {
    async fn get_checkpoint(
        &self,
        shop: &str,
        entity: &str,
    ) -> Result<Option<Checkpoint>, StoreError>;
    async fn put_checkpoint(
        &self,
        shop: &str,
        entity: &str,
        checkpoint: &Checkpoint,
    ) -> Result<(), StoreError>;
    async fn clear_checkpoint(&self, shop: &str, entity: &str) -> Result<(), StoreError>;
    /// The checkpoint, and the cursor when the adapter read it in the same request (a pull
    /// needs both when it starts): `Some(cursor)` if it did, `None` if the caller must ask
    /// [`CursorStore::get_cursor`].
    async fn get_checkpoint_and_cursor(
        &self,
        shop: &str,
        entity: &str,
    ) -> Result<(Option<Checkpoint>, Option<Option<Cursor>>), StoreError> {
        Ok((self.get_checkpoint(shop, entity).await?, None))
    }
}

/// At most one run per (shop, scope) at a time (R-SYN-3).
#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// Takes the lease until `until` if it is free, expired at `now`, or already `holder`'s.
    async fn acquire_lease(
        &self,
        shop: &str,
        scope: &str,
        holder: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<LeaseAnswer, StoreError>;
    /// Extends `holder`'s lease to `until`. `false` when the lease is no longer `holder`'s
    /// (released, or taken by another after it expired): the holder must stop.
    async fn renew_lease(
        &self,
        shop: &str,
        scope: &str,
        holder: &str,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Frees the lease if `holder` still holds it; answers whether it did.
    async fn release_lease(
        &self,
        shop: &str,
        scope: &str,
        holder: &str,
    ) -> Result<bool, StoreError>;
}

/// KiotViet id ⇄ Abaha id links with the content hash last written (R-SYN-4).
#[async_trait]
pub trait IdMapStore: Send + Sync {
    async fn get_link(
        &self,
        shop: &str,
        kind: IdKind,
        kiotviet_id: i64,
    ) -> Result<Option<IdLink>, StoreError>;
    /// The links of many ids at once (any number; duplicates allowed); unknown ids are absent.
    async fn get_links(
        &self,
        shop: &str,
        kind: IdKind,
        kiotviet_ids: &[i64],
    ) -> Result<HashMap<i64, IdLink>, StoreError>;
    /// Creates or replaces links (any number); the last of duplicate ids wins.
    async fn put_links(
        &self,
        shop: &str,
        kind: IdKind,
        links: &[(i64, IdLink)],
    ) -> Result<(), StoreError>;
    /// The KiotViet id currently linked to `abaha_id`, if any.
    async fn kiotviet_for_abaha(
        &self,
        shop: &str,
        kind: IdKind,
        abaha_id: &str,
    ) -> Result<Option<i64>, StoreError>;
}

/// Idempotency records, as in Powertools for AWS Lambda, with fencing (R-ORD-5, R-CUS-3).
///
/// A record is claimed by a `holder` (a token unique to one call); every later write names that
/// holder and is refused (`false`) once the claim has passed to another, so a call that outlived
/// its claim can never overwrite the work of the one that took over. A recorded attempt (a side
/// effect that may have happened) survives the claim expiring or being released: the next claim
/// hands it over ([`Claim::Claimed`]) until a holder completes the record or forgets it.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claims `key` for `holder` until `in_progress_until` if it is new, released, or in progress
    /// but expired at `now`. Otherwise answers who has it: in progress, or completed with the
    /// answer to replay.
    async fn claim(
        &self,
        shop: &str,
        key: &str,
        holder: &str,
        in_progress_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Claim, StoreError>;
    /// Records, while `holder` holds the claim, a side effect about to be attempted.
    /// `false`: the claim is no longer `holder`'s and nothing was written (do not attempt).
    async fn record_attempt(
        &self,
        shop: &str,
        key: &str,
        holder: &str,
        attempt: &Value,
    ) -> Result<bool, StoreError>;
    /// Records the answer (later claims replay it, about 400 days) and forgets the attempt, if
    /// `holder` still holds the claim. `false`: the claim was lost and nothing was written.
    async fn complete(
        &self,
        shop: &str,
        key: &str,
        holder: &str,
        answer: &Value,
    ) -> Result<bool, StoreError>;
    /// Gives up `holder`'s claim after a failure, so a retry can claim at once. The recorded
    /// attempt stays unless `forget_attempt` (the side effect certainly did not happen).
    /// `false` when the claim was not `holder`'s (completed, taken over or never made).
    async fn release(
        &self,
        shop: &str,
        key: &str,
        holder: &str,
        forget_attempt: bool,
    ) -> Result<bool, StoreError>;
}

/// The end of a run, written with the last reports of its parts ([`RunStore::put_entity_reports`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEnd {
    pub state: RunState,
    pub finished_at: DateTime<Utc>,
    /// The run's other parts and the (final) states they were read with.
    pub others: Vec<(Entity, PartState)>,
}

/// Most entries kept in a run's `manual_actions` and in its `errors`; the rest are counted
/// (`manual_actions_dropped`, `errors_dropped`) so a huge run cannot outgrow its item.
pub const RUN_LIST_CAP: usize = 200;

/// Run reports (R-SYN-5, CONTRACTS §1 "Run report"), updated piecewise by concurrent functions.
/// Every method takes and answers the typed report of `mapping::api`.
#[async_trait]
pub trait RunStore: Send + Sync {
    /// Stores a new run from its initial report; its `entities`, `manual_actions` and `errors`
    /// seed those sections (the lists capped at [`RUN_LIST_CAP`]). The run becomes the shop's
    /// latest. `false` (nothing changed) if the run already exists.
    async fn create_run(
        &self,
        shop: &str,
        run_id: &str,
        initial: &RunReport,
    ) -> Result<bool, StoreError>;
    /// Sets one entity's section (`entities.<entity>`), leaving the others alone.
    /// [`StoreError::NotFound`] for a run never created.
    async fn put_entity_report(
        &self,
        shop: &str,
        run_id: &str,
        entity: Entity,
        report: &EntityReport,
    ) -> Result<(), StoreError>;
    /// Sets several entities' sections at once and answers the report as it stands right after
    /// them, so the caller learns without another read whether every part of the run has ended
    /// (DynamoDB: one UpdateItem). With `end`, the same write also ends the run, but only if the
    /// other parts still stand as `end.others` says (else the reports alone are written).
    /// [`StoreError::NotFound`] for a run never created.
    async fn put_entity_reports(
        &self,
        shop: &str,
        run_id: &str,
        reports: &[(Entity, EntityReport)],
        end: Option<&RunEnd>,
    ) -> Result<RunReport, StoreError> {
        for (entity, report) in reports {
            self.put_entity_report(shop, run_id, *entity, report)
                .await?;
        }
        let not_found = || StoreError::NotFound {
            what: format!("run {run_id} of shop {shop}"),
        };
        let report = self.get_run(shop, run_id).await?.ok_or_else(not_found)?;
        let Some(end) = end else {
            return Ok(report);
        };
        let stands = end
            .others
            .iter()
            .all(|(entity, state)| report.entities.get(entity).map(|e| e.state) == Some(*state));
        if !stands {
            return Ok(report);
        }
        self.set_run_state(shop, run_id, end.state, Some(end.finished_at))
            .await?;
        self.get_run(shop, run_id).await?.ok_or_else(not_found)
    }
    /// Appends to `manual_actions`, keeping at most [`RUN_LIST_CAP`].
    async fn append_manual_actions(
        &self,
        shop: &str,
        run_id: &str,
        actions: &[ManualAction],
    ) -> Result<(), StoreError>;
    /// Appends to `errors`, keeping at most [`RUN_LIST_CAP`].
    async fn append_errors(
        &self,
        shop: &str,
        run_id: &str,
        errors: &[RunError],
    ) -> Result<(), StoreError>;
    /// Sets `state` and, when given, `finished_at`.
    async fn set_run_state(
        &self,
        shop: &str,
        run_id: &str,
        state: RunState,
        finished_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError>;
    /// The report as stored (see `report::assemble`).
    async fn get_run(&self, shop: &str, run_id: &str) -> Result<Option<RunReport>, StoreError>;
    /// The report of the shop's latest run: the most recently created (run ids sort by time, so
    /// an adapter may take the greatest id).
    async fn latest_run(&self, shop: &str) -> Result<Option<RunReport>, StoreError>;
}

/// The shared KiotViet GET budget per retailer and hour window (R-SYN-6).
#[async_trait]
pub trait BudgetStore: Send + Sync {
    /// Takes `n` calls from the window starting at `window_start` unless that would pass `limit`.
    async fn take(
        &self,
        retailer: &str,
        window_start: DateTime<Utc>,
        n: u32,
        limit: u32,
    ) -> Result<BudgetAnswer, StoreError>;
}

/// Every DynamoDB-backed port at once, for code that wires a whole service
/// (`&dyn Store` upcasts to any single port).
pub trait Store:
    ConnectionStore
    + CursorStore
    + CheckpointStore
    + LeaseStore
    + IdMapStore
    + IdempotencyStore
    + RunStore
    + BudgetStore
{
}

impl<T> Store for T where
    T: ConnectionStore
        + CursorStore
        + CheckpointStore
        + LeaseStore
        + IdMapStore
        + IdempotencyStore
        + RunStore
        + BudgetStore
{
}

/// Job messages between functions (R-SYN-7): SQS with a dead-letter queue.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Sends a JSON message, visible after `delay_secs` (at most 900); answers the message id.
    async fn send(
        &self,
        queue_url: &str,
        body: &Value,
        delay_secs: Option<u32>,
    ) -> Result<String, StoreError>;
    /// Up to `max` (1..=10) messages, waiting up to `wait_secs` (long poll) for the first, each
    /// hidden from other receivers for `visibility_secs`.
    async fn receive(
        &self,
        queue_url: &str,
        max: u32,
        wait_secs: u32,
        visibility_secs: u32,
    ) -> Result<Vec<QueuedJob>, StoreError>;
    async fn delete(&self, queue_url: &str, receipt: &str) -> Result<(), StoreError>;
    /// Hides (or, with 0, releases) a received message for `secs` from now.
    async fn change_visibility(
        &self,
        queue_url: &str,
        receipt: &str,
        secs: u32,
    ) -> Result<(), StoreError>;
}
