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

pub use apply::apply;
pub use receive::{Accepted, Delivery, Dropped, WebhookAnswer, receive};
pub use signature::{SignatureError, signature_for_shop, verify_signature};

/// The header KiotViet signs deliveries in (reference §5.7).
pub const SIGNATURE_HEADER: &str = "x-hub-signature";

// ---------------------------------------------------------------------------------------------
// The job handed to the pull functions
// ---------------------------------------------------------------------------------------------

pub use crate::model::{Change, JobKind, Notice, WebhookJob};

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
            crate::jobs::parse_message(&json!({"kind": "webhook"})),
            Err(crate::JobError::BadJob(_))
        ));
    }
}
