//! The messages on the pull queues: a sync job, or a KiotViet webhook job.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::entity::Entity;
use super::webhook::WebhookJob;

/// One message on a pull queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncJob {
    pub shop_id: String,
    pub run_id: String,
    pub entities: Vec<Entity>,
    pub full: bool,
    /// How many continuations came before this one (a guard against endless hand-overs).
    #[serde(default)]
    pub continuation: u32,
    /// Entities to enqueue (on their own queues) once this job's entities are done: invoices
    /// wait for the products of the same run, whose Abaha ids their lines carry (R-INV-2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub then: Vec<Entity>,
    /// This delivery's own token, never sent: the pull's lease holder is `run_id/invocation`, so
    /// a message delivered again while its first delivery still runs cannot take the part over.
    #[serde(skip)]
    pub invocation: String,
    /// Until when the run's start holds the shop's run lease (R-SYN-3): a job that ends before
    /// then needs no lease write of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_until: Option<DateTime<Utc>>,
    /// The budget window in which the run's start took one KiotViet GET per entity (R-SYN-6):
    /// the first page of each entity is paid already.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepaid: Option<DateTime<Utc>>,
    /// Started by the schedule: nobody watches it live, so a job reports its parts together
    /// when it ends (one write per job). A run from the Sync button reports each part as it ends.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub scheduled: bool,
    /// The part whose queue this job travels on, whatever part it is at (a scheduled run's one
    /// job: the catalog queue, whose function may send only there). None: its current part's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<Entity>,
}

impl SyncJob {
    pub fn new(shop: &str, run_id: &str, full: bool) -> Self {
        SyncJob {
            shop_id: shop.to_string(),
            run_id: run_id.to_string(),
            entities: vec![],
            full,
            continuation: 0,
            then: vec![],
            lease_until: None,
            prepaid: None,
            scheduled: false,
            home: None,
            invocation: String::new(),
        }
    }

    /// Who holds a part's lease for this delivery (fencing token): the run, and the invocation.
    pub fn lease_holder(&self) -> String {
        if self.invocation.is_empty() {
            self.run_id.clone()
        } else {
            format!("{}/{}", self.run_id, self.invocation)
        }
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// A message on a pull queue: a sync job, or a KiotViet webhook job (R-SYN-8), which travels on
/// the same queues to the same functions. Told apart here, once, by the webhook job's `kind`.
#[derive(Debug, Clone, PartialEq)]
pub enum JobMessage {
    Sync(SyncJob),
    Webhook(WebhookJob),
}

impl JobMessage {
    pub fn parse(body: &Value) -> Result<Self, serde_json::Error> {
        if body.get("kind").and_then(Value::as_str) == Some("webhook") {
            serde_json::from_value(body.clone()).map(JobMessage::Webhook)
        } else {
            serde_json::from_value(body.clone()).map(JobMessage::Sync)
        }
    }
}
