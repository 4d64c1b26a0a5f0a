//! The webhook job (R-SYN-8): what the webhook receiver queues for the pull functions.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use store::Connection;

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
    pub fn is_catalog(self) -> bool {
        matches!(
            self,
            Change::ProductUpdate | Change::StockUpdate | Change::ProductDelete
        )
    }

    /// R-CON-6: product events belong to the products switch, customer events to customers.
    pub fn is_switched_on(self, conn: &Connection) -> bool {
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
/// fresh from KiotViet (see `webhooks::apply`), so a message stays small whatever KiotViet sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookJob {
    pub kind: JobKind,
    pub shop_id: String,
    /// The envelope `Id` (or a digest of a bare delete body), for the logs.
    pub delivery: String,
    pub notifications: Vec<Notice>,
}

/// The tag that tells a webhook job from a [`SyncJob`](super::SyncJob) on the same queue.
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
