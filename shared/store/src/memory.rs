//! In-memory fakes of every port, for unit tests of the engine and the functions.
//!
//! They follow the adapters' contracts (conditions, expiry, caps, answers), and the same contract
//! tests run against both (`tests/contract.rs`), so a fake cannot drift from its adapter.
//! Cloning shares the state, like cloning a client shares the table.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration as StdDuration, Instant};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use mapping::api::{Entity, EntityReport, ManualAction, RunError, RunReport, RunState};

use crate::StoreError;
use crate::dynamo::idempotency::{COMPLETED_TTL, UNFINISHED_LINGER};
use crate::dynamo::runs::RUN_TTL;
use crate::model::{
    BudgetAnswer, Checkpoint, Claim, Connection, ConnectionPage, Cursor, IdKind, IdLink,
    LeaseAnswer, QueueUrls, QueuedJob, SealedSecret,
};
use crate::ports::{
    BudgetStore, CheckpointStore, ConnectionStore, CursorStore, IdMapStore, IdempotencyStore,
    JobQueue, LeaseStore, RunStore, SecretSealer,
};
use crate::report::{self, StoredRun};

/// Connections per page of the in-memory store: small, so its tests page as DynamoDB's do.
const MEMORY_CONNECTION_PAGE: usize = 3;

/// A poisoned lock only means another test thread panicked; the data is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

type ShopKey = (String, String);

fn shop_key(shop: &str, name: &str) -> ShopKey {
    (shop.to_owned(), name.to_owned())
}

#[derive(Debug, Clone)]
struct Lease {
    holder: String,
    until: DateTime<Utc>,
}

#[derive(Debug, Clone)]
enum Idem {
    InProgress {
        holder: String,
        until: DateTime<Utc>,
        attempt: Option<Value>,
        expires_at: i64,
    },
    Released {
        attempt: Option<Value>,
        expires_at: i64,
    },
    Completed {
        answer: Value,
        expires_at: i64,
    },
}

impl Idem {
    fn expires_at(&self) -> i64 {
        match self {
            Idem::InProgress { expires_at, .. }
            | Idem::Released { expires_at, .. }
            | Idem::Completed { expires_at, .. } => *expires_at,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Run {
    stored: StoredRun,
    expires_at: i64,
}

#[derive(Debug, Default)]
struct State {
    connections: BTreeMap<String, Connection>,
    cursors: HashMap<ShopKey, DateTime<Utc>>,
    checkpoints: HashMap<ShopKey, Checkpoint>,
    leases: HashMap<ShopKey, Lease>,
    links: HashMap<(String, IdKind, i64), IdLink>,
    reverse: HashMap<(String, IdKind, String), i64>,
    idempotency: HashMap<ShopKey, Idem>,
    runs: HashMap<ShopKey, Run>,
    latest_run: HashMap<String, String>,
    budget: HashMap<(String, DateTime<Utc>), u32>,
}

/// Every DynamoDB-backed port, in memory.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

#[async_trait]
impl ConnectionStore for MemoryStore {
    async fn get_connection(&self, shop: &str) -> Result<Option<Connection>, StoreError> {
        Ok(self.state().connections.get(shop).cloned())
    }

    async fn put_connection(&self, connection: &Connection) -> Result<(), StoreError> {
        self.state()
            .connections
            .insert(connection.shop_id.clone(), connection.clone());
        Ok(())
    }

    async fn delete_connection(&self, shop: &str) -> Result<bool, StoreError> {
        Ok(self.state().connections.remove(shop).is_some())
    }

    async fn list_connections_page(
        &self,
        after: Option<&str>,
    ) -> Result<ConnectionPage, StoreError> {
        use std::ops::Bound;
        let state = self.state();
        let from = after.map_or(Bound::Unbounded, |shop| Bound::Excluded(shop.to_owned()));
        let mut rest = state.connections.range((from, Bound::Unbounded));
        let connections: Vec<Connection> = rest
            .by_ref()
            .take(MEMORY_CONNECTION_PAGE)
            .map(|(_, c)| c.clone())
            .collect();
        let next = match rest.next() {
            Some(_) => connections.last().map(|c| c.shop_id.clone()),
            None => None,
        };
        Ok(ConnectionPage { connections, next })
    }

    async fn shop_of_token(&self, token_hash: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .state()
            .connections
            .values()
            .find(|c| c.shop_token_hash.as_deref() == Some(token_hash))
            .map(|c| c.shop_id.clone()))
    }
}

#[async_trait]
impl CursorStore for MemoryStore {
    async fn get_cursor(&self, shop: &str, entity: &str) -> Result<Option<Cursor>, StoreError> {
        Ok(self
            .state()
            .cursors
            .get(&shop_key(shop, entity))
            .map(|at| Cursor { modified_from: *at }))
    }

    async fn advance_cursor(
        &self,
        shop: &str,
        entity: &str,
        to: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut state = self.state();
        let cursor = state.cursors.entry(shop_key(shop, entity)).or_insert(to);
        if *cursor > to {
            return Ok(false);
        }
        *cursor = to;
        Ok(true)
    }

    async fn reset_cursor(&self, shop: &str, entity: &str) -> Result<(), StoreError> {
        self.state().cursors.remove(&shop_key(shop, entity));
        Ok(())
    }
}

#[async_trait]
impl CheckpointStore for MemoryStore {
    async fn get_checkpoint(
        &self,
        shop: &str,
        entity: &str,
    ) -> Result<Option<Checkpoint>, StoreError> {
        Ok(self
            .state()
            .checkpoints
            .get(&shop_key(shop, entity))
            .cloned())
    }

    async fn put_checkpoint(
        &self,
        shop: &str,
        entity: &str,
        checkpoint: &Checkpoint,
    ) -> Result<(), StoreError> {
        self.state()
            .checkpoints
            .insert(shop_key(shop, entity), checkpoint.clone());
        Ok(())
    }

    async fn clear_checkpoint(&self, shop: &str, entity: &str) -> Result<(), StoreError> {
        self.state().checkpoints.remove(&shop_key(shop, entity));
        Ok(())
    }
}

#[async_trait]
impl LeaseStore for MemoryStore {
    async fn acquire_lease(
        &self,
        shop: &str,
        scope: &str,
        holder: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<LeaseAnswer, StoreError> {
        let mut state = self.state();
        let key = shop_key(shop, scope);
        if let Some(lease) = state.leases.get(&key)
            && lease.until > now
            && lease.holder != holder
        {
            return Ok(LeaseAnswer::HeldBy {
                holder: lease.holder.clone(),
                until: lease.until,
            });
        }
        state.leases.insert(
            key,
            Lease {
                holder: holder.to_owned(),
                until,
            },
        );
        Ok(LeaseAnswer::Acquired)
    }

    async fn renew_lease(
        &self,
        shop: &str,
        scope: &str,
        holder: &str,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut state = self.state();
        match state.leases.get_mut(&shop_key(shop, scope)) {
            Some(lease) if lease.holder == holder => {
                lease.until = until;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release_lease(
        &self,
        shop: &str,
        scope: &str,
        holder: &str,
    ) -> Result<bool, StoreError> {
        let mut state = self.state();
        let key = shop_key(shop, scope);
        if state
            .leases
            .get(&key)
            .is_some_and(|lease| lease.holder == holder)
        {
            state.leases.remove(&key);
            return Ok(true);
        }
        Ok(false)
    }
}

#[async_trait]
impl IdMapStore for MemoryStore {
    async fn get_link(
        &self,
        shop: &str,
        kind: IdKind,
        kiotviet_id: i64,
    ) -> Result<Option<IdLink>, StoreError> {
        Ok(self
            .state()
            .links
            .get(&(shop.to_owned(), kind, kiotviet_id))
            .cloned())
    }

    async fn get_links(
        &self,
        shop: &str,
        kind: IdKind,
        kiotviet_ids: &[i64],
    ) -> Result<HashMap<i64, IdLink>, StoreError> {
        let state = self.state();
        Ok(kiotviet_ids
            .iter()
            .filter_map(|id| {
                state
                    .links
                    .get(&(shop.to_owned(), kind, *id))
                    .map(|link| (*id, link.clone()))
            })
            .collect())
    }

    async fn put_links(
        &self,
        shop: &str,
        kind: IdKind,
        links: &[(i64, IdLink)],
    ) -> Result<(), StoreError> {
        let mut state = self.state();
        for (kiotviet_id, link) in links {
            state
                .links
                .insert((shop.to_owned(), kind, *kiotviet_id), link.clone());
            if kind.has_reverse() {
                state
                    .reverse
                    .insert((shop.to_owned(), kind, link.abaha_id.clone()), *kiotviet_id);
            }
        }
        Ok(())
    }

    async fn kiotviet_for_abaha(
        &self,
        shop: &str,
        kind: IdKind,
        abaha_id: &str,
    ) -> Result<Option<i64>, StoreError> {
        let state = self.state();
        let Some(kiotviet_id) = state
            .reverse
            .get(&(shop.to_owned(), kind, abaha_id.to_owned()))
        else {
            return Ok(None);
        };
        // Like the adapter: a reverse link left behind by a relink does not count.
        let current = state.links.get(&(shop.to_owned(), kind, *kiotviet_id));
        Ok(current
            .filter(|link| link.abaha_id == abaha_id)
            .map(|_| *kiotviet_id))
    }
}

#[async_trait]
impl IdempotencyStore for MemoryStore {
    async fn claim(
        &self,
        shop: &str,
        key: &str,
        holder: &str,
        in_progress_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        let mut state = self.state();
        let record_key = shop_key(shop, key);
        let record = state.idempotency.get(&record_key);
        let live = record.is_some_and(|r| r.expires_at() > now.timestamp());
        let attempt = match record {
            Some(Idem::Completed { answer, .. }) if live => {
                return Ok(Claim::Completed(answer.clone()));
            }
            // A repeat of our own claim (a retried request) is still ours.
            Some(Idem::InProgress {
                holder: h,
                until,
                attempt,
                ..
            }) if live && *until > now && h == holder => {
                return Ok(Claim::Claimed {
                    attempt: attempt.clone(),
                });
            }
            Some(Idem::InProgress { until, .. }) if live && *until > now => {
                return Ok(Claim::InProgress { until: *until });
            }
            // As on DynamoDB, an expired record still hands its attempt on: looking once more
            // is the safe side.
            Some(Idem::InProgress { attempt, .. } | Idem::Released { attempt, .. }) => {
                attempt.clone()
            }
            _ => None,
        };
        state.idempotency.insert(
            record_key,
            Idem::InProgress {
                holder: holder.to_string(),
                until: in_progress_until,
                attempt: attempt.clone(),
                expires_at: (in_progress_until + UNFINISHED_LINGER).timestamp(),
            },
        );
        Ok(Claim::Claimed { attempt })
    }

    async fn record_attempt(
        &self,
        shop: &str,
        key: &str,
        holder: &str,
        attempt: &Value,
    ) -> Result<bool, StoreError> {
        let mut state = self.state();
        match state.idempotency.get_mut(&shop_key(shop, key)) {
            Some(Idem::InProgress {
                holder: h,
                until,
                attempt: a,
                expires_at,
            }) if h == holder => {
                *a = Some(attempt.clone());
                *expires_at = (*until + UNFINISHED_LINGER).timestamp();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn complete(
        &self,
        shop: &str,
        key: &str,
        holder: &str,
        answer: &Value,
    ) -> Result<bool, StoreError> {
        let mut state = self.state();
        let record_key = shop_key(shop, key);
        if !matches!(state.idempotency.get(&record_key), Some(Idem::InProgress { holder: h, .. }) if h == holder)
        {
            return Ok(false);
        }
        state.idempotency.insert(
            record_key,
            Idem::Completed {
                answer: answer.clone(),
                expires_at: (Utc::now() + COMPLETED_TTL).timestamp(),
            },
        );
        Ok(true)
    }

    async fn release(
        &self,
        shop: &str,
        key: &str,
        holder: &str,
        forget_attempt: bool,
    ) -> Result<bool, StoreError> {
        let mut state = self.state();
        let record_key = shop_key(shop, key);
        let kept = match state.idempotency.get(&record_key) {
            Some(Idem::InProgress {
                holder: h,
                attempt,
                expires_at,
                ..
            }) if h == holder => (!forget_attempt)
                .then(|| attempt.clone())
                .flatten()
                .map(|a| (a, *expires_at)),
            _ => return Ok(false),
        };
        match kept {
            Some((attempt, expires_at)) => {
                state.idempotency.insert(
                    record_key,
                    Idem::Released {
                        attempt: Some(attempt),
                        expires_at,
                    },
                );
            }
            None => {
                state.idempotency.remove(&record_key);
            }
        }
        Ok(true)
    }
}

impl MemoryStore {
    fn with_run<T>(
        &self,
        shop: &str,
        run_id: &str,
        change: impl FnOnce(&mut Run) -> T,
    ) -> Result<T, StoreError> {
        let mut state = self.state();
        let now = Utc::now().timestamp();
        match state.runs.get_mut(&shop_key(shop, run_id)) {
            Some(run) if run.expires_at > now => Ok(change(run)),
            _ => Err(StoreError::NotFound {
                what: format!("run {run_id} of shop {shop}"),
            }),
        }
    }
}

#[async_trait]
impl RunStore for MemoryStore {
    async fn create_run(
        &self,
        shop: &str,
        run_id: &str,
        initial: &RunReport,
    ) -> Result<bool, StoreError> {
        let run = Run {
            stored: report::split_initial(initial),
            expires_at: (Utc::now() + RUN_TTL).timestamp(),
        };
        let mut state = self.state();
        let key = shop_key(shop, run_id);
        if state.runs.contains_key(&key) {
            return Ok(false);
        }
        state.runs.insert(key, run);
        state.latest_run.insert(shop.to_owned(), run_id.to_owned());
        Ok(true)
    }

    async fn put_entity_report(
        &self,
        shop: &str,
        run_id: &str,
        entity: Entity,
        report: &EntityReport,
    ) -> Result<(), StoreError> {
        self.with_run(shop, run_id, |run| {
            run.stored.entities.insert(entity, report.clone());
        })
    }

    async fn append_manual_actions(
        &self,
        shop: &str,
        run_id: &str,
        actions: &[ManualAction],
    ) -> Result<(), StoreError> {
        self.with_run(shop, run_id, |run| {
            report::append_capped(
                &mut run.stored.manual_actions,
                &mut run.stored.manual_actions_dropped,
                actions,
            )
        })
    }

    async fn append_errors(
        &self,
        shop: &str,
        run_id: &str,
        errors: &[RunError],
    ) -> Result<(), StoreError> {
        self.with_run(shop, run_id, |run| {
            report::append_capped(
                &mut run.stored.errors,
                &mut run.stored.errors_dropped,
                errors,
            )
        })
    }

    async fn set_run_state(
        &self,
        shop: &str,
        run_id: &str,
        state: RunState,
        finished_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        self.with_run(shop, run_id, |run| {
            run.stored.state = Some(state);
            if let Some(at) = finished_at {
                run.stored.finished_at = Some(at);
            }
        })
    }

    async fn get_run(&self, shop: &str, run_id: &str) -> Result<Option<RunReport>, StoreError> {
        let now = Utc::now().timestamp();
        Ok(self
            .state()
            .runs
            .get(&shop_key(shop, run_id))
            .filter(|run| run.expires_at > now)
            .map(|run| report::assemble(run_id, run.stored.clone())))
    }

    async fn latest_run(&self, shop: &str) -> Result<Option<RunReport>, StoreError> {
        let run_id = self.state().latest_run.get(shop).cloned();
        match run_id {
            Some(run_id) => self.get_run(shop, &run_id).await,
            None => Ok(None),
        }
    }
}

#[async_trait]
impl BudgetStore for MemoryStore {
    async fn take(
        &self,
        retailer: &str,
        window_start: DateTime<Utc>,
        n: u32,
        limit: u32,
    ) -> Result<BudgetAnswer, StoreError> {
        if n > limit {
            return Ok(BudgetAnswer::Exhausted { used: 0 });
        }
        let mut state = self.state();
        let used = state
            .budget
            .entry((retailer.to_owned(), window_start))
            .or_insert(0);
        if *used > limit - n {
            return Ok(BudgetAnswer::Exhausted { used: *used });
        }
        *used += n;
        Ok(BudgetAnswer::Granted { used: *used })
    }
}

/// A [`SecretSealer`] that keeps secrets in memory: the sealed string is a random handle (no
/// trace of the plaintext), and it opens only for the shop it was sealed for.
#[derive(Clone, Default)]
pub struct MemorySealer {
    sealed: Arc<Mutex<HashMap<String, (String, SecretString)>>>,
}

impl std::fmt::Debug for MemorySealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemorySealer(<secrets>)")
    }
}

impl MemorySealer {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl SecretSealer for MemorySealer {
    async fn seal(&self, shop: &str, secret: &SecretString) -> Result<SealedSecret, StoreError> {
        let mut handle = [0u8; 32];
        rand::rng().fill_bytes(&mut handle);
        let handle = STANDARD.encode(handle);
        let copy = SecretString::from(secret.expose_secret().to_owned());
        lock(&self.sealed).insert(handle.clone(), (shop.to_owned(), copy));
        Ok(SealedSecret::from_base64(handle))
    }

    async fn open(&self, shop: &str, sealed: &SealedSecret) -> Result<SecretString, StoreError> {
        let sealed_map = lock(&self.sealed);
        match sealed_map.get(sealed.as_base64()) {
            Some((owner, secret)) if owner == shop => {
                Ok(SecretString::from(secret.expose_secret().to_owned()))
            }
            _ => Err(StoreError::SecretRejected {
                shop: shop.to_owned(),
                source: None,
            }),
        }
    }
}

#[derive(Debug)]
struct Message {
    id: String,
    body: String,
    visible_at: Instant,
    receive_count: u32,
    receipt: Option<String>,
}

#[derive(Debug, Default)]
struct Queue {
    messages: Vec<Message>,
    /// Dead-letter queue url and the receive count after which a message moves there.
    redrive: Option<(String, u32)>,
}

/// A [`JobQueue`] in memory, with visibility timeouts, receive counts and redrive like SQS.
/// Queues must be made with [`MemoryQueue::ensure_queue`] first.
#[derive(Debug, Clone, Default)]
pub struct MemoryQueue {
    queues: Arc<Mutex<HashMap<String, Queue>>>,
}

fn random_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl MemoryQueue {
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates (or keeps) a queue and its dead-letter queue, as [`crate::provision::ensure_queue`] does on SQS.
    pub fn ensure_queue(&self, name: &str, dlq_name: &str, max_receive: u32) -> QueueUrls {
        let urls = QueueUrls {
            url: format!("memory://queue/{name}"),
            dlq_url: format!("memory://queue/{dlq_name}"),
        };
        let mut queues = lock(&self.queues);
        queues.entry(urls.dlq_url.clone()).or_default();
        queues.entry(urls.url.clone()).or_default().redrive =
            Some((urls.dlq_url.clone(), max_receive));
        urls
    }

    /// Messages in a queue, visible or not (for assertions).
    pub fn len(&self, queue_url: &str) -> usize {
        lock(&self.queues)
            .get(queue_url)
            .map_or(0, |q| q.messages.len())
    }

    pub fn is_empty(&self, queue_url: &str) -> bool {
        self.len(queue_url) == 0
    }

    fn no_queue(queue_url: &str) -> StoreError {
        StoreError::NotFound {
            what: format!("queue {queue_url}"),
        }
    }

    /// One pass over the queue: delivers what is visible, moves what was received too often.
    fn receive_now(
        &self,
        queue_url: &str,
        max: usize,
        visibility: StdDuration,
    ) -> Result<Vec<QueuedJob>, StoreError> {
        let mut queues = lock(&self.queues);
        let queue = queues
            .get_mut(queue_url)
            .ok_or_else(|| Self::no_queue(queue_url))?;
        let now = Instant::now();
        let redrive = queue.redrive.clone();
        let mut jobs = Vec::new();
        let mut to_dlq = Vec::new();
        for (index, message) in queue.messages.iter_mut().enumerate() {
            if jobs.len() >= max {
                break;
            }
            if message.visible_at > now {
                continue;
            }
            if let Some((_, max_receive)) = &redrive
                && message.receive_count >= *max_receive
            {
                to_dlq.push(index);
                continue;
            }
            message.receive_count += 1;
            message.visible_at = now + visibility;
            let receipt = random_id();
            message.receipt = Some(receipt.clone());
            jobs.push(QueuedJob {
                id: message.id.clone(),
                receipt,
                body: serde_json::from_str(&message.body)
                    .unwrap_or_else(|_| Value::String(message.body.clone())),
                receive_count: message.receive_count,
            });
        }
        let moved: Vec<Message> = to_dlq
            .into_iter()
            .rev()
            .map(|index| queue.messages.remove(index))
            .collect();
        if let Some((dlq_url, _)) = redrive {
            let dlq = queues.entry(dlq_url).or_default();
            for mut message in moved.into_iter().rev() {
                message.receipt = None;
                message.visible_at = now;
                dlq.messages.push(message);
            }
        }
        Ok(jobs)
    }
}

#[async_trait]
impl JobQueue for MemoryQueue {
    async fn send(
        &self,
        queue_url: &str,
        body: &Value,
        delay_secs: Option<u32>,
    ) -> Result<String, StoreError> {
        let body = serde_json::to_string(body).map_err(|e| StoreError::malformed("job body", e))?;
        let mut queues = lock(&self.queues);
        let queue = queues
            .get_mut(queue_url)
            .ok_or_else(|| Self::no_queue(queue_url))?;
        let id = random_id();
        queue.messages.push(Message {
            id: id.clone(),
            body,
            visible_at: Instant::now() + StdDuration::from_secs(u64::from(delay_secs.unwrap_or(0))),
            receive_count: 0,
            receipt: None,
        });
        Ok(id)
    }

    async fn receive(
        &self,
        queue_url: &str,
        max: u32,
        wait_secs: u32,
        visibility_secs: u32,
    ) -> Result<Vec<QueuedJob>, StoreError> {
        let max = max.clamp(1, 10) as usize;
        let visibility = StdDuration::from_secs(u64::from(visibility_secs));
        let deadline = Instant::now() + StdDuration::from_secs(u64::from(wait_secs.min(20)));
        loop {
            let jobs = self.receive_now(queue_url, max, visibility)?;
            if !jobs.is_empty() || Instant::now() >= deadline {
                return Ok(jobs);
            }
            tokio::time::sleep(StdDuration::from_millis(20)).await;
        }
    }

    async fn delete(&self, queue_url: &str, receipt: &str) -> Result<(), StoreError> {
        let mut queues = lock(&self.queues);
        let queue = queues
            .get_mut(queue_url)
            .ok_or_else(|| Self::no_queue(queue_url))?;
        // Like SQS, an unknown or stale receipt is not an error.
        queue
            .messages
            .retain(|m| m.receipt.as_deref() != Some(receipt));
        Ok(())
    }

    async fn change_visibility(
        &self,
        queue_url: &str,
        receipt: &str,
        secs: u32,
    ) -> Result<(), StoreError> {
        let mut queues = lock(&self.queues);
        let queue = queues
            .get_mut(queue_url)
            .ok_or_else(|| Self::no_queue(queue_url))?;
        if let Some(message) = queue
            .messages
            .iter_mut()
            .find(|m| m.receipt.as_deref() == Some(receipt))
        {
            message.visible_at = Instant::now() + StdDuration::from_secs(u64::from(secs));
        }
        Ok(())
    }
}
