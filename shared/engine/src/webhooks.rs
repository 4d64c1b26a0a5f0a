//! KiotViet FnB webhooks (R-SYN-8): a change at the till reaches Abaha in seconds; the scheduled
//! pull stays the safety net for anything a webhook misses.
//!
//! - [`receive`] — `POST /v1/kiotviet/webhooks/{shop}`: verifies the HMAC-SHA256 of the raw body
//!   with the shop's webhook secret, dedupes on the envelope `Id`, queues a [`WebhookJob`] on the
//!   pull queues and answers at once. Always 200: KiotViet disables a hook that answers
//!   400/401/403/404/405 (reference §5.7), so what is not accepted is dropped, logged, and said in
//!   `{"accepted": false, "reason"}`.
//! - [`apply`] — runs a [`WebhookJob`] in the catalog or customer pull function.
//! - [`registration`] — registers the five hooks when a connection is saved, removes them on
//!   disconnect.

mod apply;
mod plan;
mod receive;
pub mod registration;
mod signature;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use store::Connection;

pub use apply::apply;
pub use receive::{Accepted, Delivery, Dropped, WebhookAnswer, receive};
pub use signature::{SignatureError, signature_for_shop, verify_signature};

/// The header KiotViet signs deliveries in (reference §5.7).
pub const SIGNATURE_HEADER: &str = "x-hub-signature";

// ---------------------------------------------------------------------------------------------
// The job handed to the pull functions
// ---------------------------------------------------------------------------------------------

/// What changed in KiotViet, as the pull functions apply it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Change {
    #[serde(rename = "product.update")]
    ProductUpdate,
    /// Stock of the connection's branch changed (other branches are dropped on receipt, R-PRD-5).
    #[serde(rename = "stock.update")]
    StockUpdate,
    #[serde(rename = "product.delete")]
    ProductDelete,
    #[serde(rename = "customer.update")]
    CustomerUpdate,
    #[serde(rename = "customer.delete")]
    CustomerDelete,
}

impl Change {
    fn is_catalog(self) -> bool {
        matches!(
            self,
            Change::ProductUpdate | Change::StockUpdate | Change::ProductDelete
        )
    }

    /// R-CON-6: product events belong to the products switch, customer events to customers.
    fn is_switched_on(self, conn: &Connection) -> bool {
        if self.is_catalog() {
            conn.sync.products
        } else {
            conn.sync.customers
        }
    }
}

/// One kind of change and the KiotViet ids it names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub action: Change,
    pub ids: Vec<i64>,
}

/// A message on the catalog or customer queue: `{"kind": "webhook", "shop_id", "delivery",
/// "notifications": [{"action", "ids"}]}`. Only ids travel: the pull function reads each record
/// fresh from KiotViet (see [`apply`]), so a message stays small whatever KiotViet sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookJob {
    pub kind: JobKind,
    pub shop_id: String,
    /// The envelope `Id` (or a digest of a bare delete body), for the logs.
    pub delivery: String,
    pub notifications: Vec<Notice>,
}

/// The tag that tells a webhook job from a [`SyncJob`](crate::SyncJob) on the same queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    Webhook,
}

impl WebhookJob {
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn webhook_jobs_are_told_from_sync_jobs() {
        let job = WebhookJob {
            kind: JobKind::Webhook,
            shop_id: "s1".into(),
            delivery: "d1".into(),
            notifications: vec![Notice {
                action: Change::ProductUpdate,
                ids: vec![1],
            }],
        };
        let v = job.to_value();
        assert_eq!(v["notifications"][0]["action"], json!("product.update"));
        assert_eq!(
            crate::jobs::JobMessage::parse(&v).expect("a webhook job"),
            crate::jobs::JobMessage::Webhook(job)
        );
        let sync = crate::SyncJob::new("s1", "run-1", false);
        assert_eq!(
            crate::jobs::JobMessage::parse(&sync.to_value()).expect("a sync job"),
            crate::jobs::JobMessage::Sync(sync)
        );
        // Neither shape: a bad job, never retried
        assert!(matches!(
            crate::jobs::JobMessage::parse(&json!({"kind": "webhook"})),
            Err(crate::JobError::BadJob(_))
        ));
    }
}
