//! Receiving a delivery (`POST /v1/kiotviet/webhooks/{shop}`): verify, sort, dedupe, queue, answer.
//! Never an error: KiotViet disables a hook that answers 400/401/403/404/405 (reference §5.7), so
//! what is not accepted is dropped, logged, and said in the answer.

use std::time::Duration;

use chrono::Duration as ChronoDuration;
use mapping::kiotviet::WebhookPayload;
use secrecy::ExposeSecret;
use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use store::Claim;

use super::plan::plan;
use super::signature::{SignatureError, verify_signature};
use super::{JobKind, WebhookJob};
use crate::service::Service;

/// KiotViet gives a receiver 5 s; everything the receiver does must fit well inside.
const ANSWER_WITHIN: Duration = Duration::from_secs(4);

/// How long a delivery's dedupe claim stays "in progress" before it is completed or, after a
/// crash, may be claimed again.
const CLAIM_FOR_SECS: i64 = 60;

/// One delivery as KiotViet sent it: the raw body (the MAC covers its exact bytes), the
/// `X-Hub-Signature` value, and the `event` query parameter of the URL we registered.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    pub body: &'a [u8],
    pub signature: Option<&'a str>,
    pub event: Option<&'a str>,
}

/// The answer to a delivery: `{"accepted": true, "queued", "ignored", "duplicate"}` or
/// `{"accepted": false, "reason"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookAnswer {
    Accepted(Accepted),
    Dropped(Dropped),
}

impl Serialize for WebhookAnswer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            WebhookAnswer::Accepted(a) => {
                let mut m = s.serialize_map(Some(4))?;
                m.serialize_entry("accepted", &true)?;
                m.serialize_entry("queued", &a.queued)?;
                m.serialize_entry("ignored", &a.ignored)?;
                m.serialize_entry("duplicate", &a.duplicate)?;
                m.end()
            }
            WebhookAnswer::Dropped(d) => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("accepted", &false)?;
                m.serialize_entry("reason", d.reason())?;
                m.end()
            }
        }
    }
}

/// Why a delivery was dropped; the `reason` of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    UnknownShop,
    NotRegistered,
    Signature(SignatureError),
    MalformedBody,
    Unavailable,
    Timeout,
}

impl Dropped {
    pub fn reason(self) -> &'static str {
        match self {
            Dropped::UnknownShop => "unknown_shop",
            Dropped::NotRegistered => "webhooks_not_registered",
            Dropped::Signature(e) => e.reason(),
            Dropped::MalformedBody => "malformed_body",
            Dropped::Unavailable => "temporarily_unavailable",
            Dropped::Timeout => "timeout",
        }
    }
}

/// What was done with an accepted delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub queued: usize,
    pub ignored: usize,
    pub duplicate: bool,
}

/// `POST /v1/kiotviet/webhooks/{shop}`. Never an error: see the module docs.
pub async fn receive(svc: &Service, shop: &str, delivery: Delivery<'_>) -> WebhookAnswer {
    let outcome = match tokio::time::timeout(ANSWER_WITHIN, accept(svc, shop, delivery)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(Dropped::Timeout),
    };
    match outcome {
        Ok(a) => {
            tracing::info!(
                shop,
                queued = a.queued,
                ignored = a.ignored,
                duplicate = a.duplicate,
                "webhook accepted"
            );
            WebhookAnswer::Accepted(a)
        }
        Err(d) => {
            // The body may hold customer data and the header is a MAC: neither is logged.
            tracing::warn!(
                shop,
                reason = d.reason(),
                body_bytes = delivery.body.len(),
                "webhook dropped"
            );
            WebhookAnswer::Dropped(d)
        }
    }
}

async fn accept(svc: &Service, shop: &str, req: Delivery<'_>) -> Result<Accepted, Dropped> {
    if !plain_shop_id(shop) {
        return Err(Dropped::UnknownShop);
    }
    let conn = svc
        .store
        .get_connection(shop)
        .await
        .map_err(|e| unavailable("reading the connection", &e))?
        .ok_or(Dropped::UnknownShop)?;
    let sealed = conn.webhook_secret.as_ref().ok_or(Dropped::NotRegistered)?;
    let secret = svc
        .sealer
        .open(shop, sealed)
        .await
        .map_err(|e| unavailable("opening the webhook secret", &e))?;
    verify_signature(secret.expose_secret().as_bytes(), req.body, req.signature)
        .map_err(Dropped::Signature)?;

    // Verified: from here on the body is KiotViet's.
    let value: Value = serde_json::from_slice(req.body).map_err(|_| Dropped::MalformedBody)?;
    let payload = WebhookPayload::from_value(&value).map_err(|_| Dropped::MalformedBody)?;
    let plan = plan(&payload, req.event, &conn);
    if plan.catalog.is_empty() && plan.customers.is_empty() {
        return Ok(Accepted {
            queued: 0,
            ignored: plan.ignored,
            duplicate: false,
        });
    }

    // Dedupe on the envelope Id: a retry (higher Attempt) is the same delivery. The bare delete
    // form has no Id; a digest of its body names it (a retry repeats the body byte for byte).
    let delivery = match &payload {
        WebhookPayload::Envelope(env) => env.id.clone().filter(|id| !id.trim().is_empty()),
        WebhookPayload::Removal(_) => None,
    }
    .unwrap_or_else(|| format!("body-{}", &hex::encode(Sha256::digest(req.body))[..32]));
    let key = format!("webhook#{delivery}");
    let now = svc.now();
    let holder = uuid::Uuid::new_v4().to_string();
    let claim = svc
        .store
        .claim(
            shop,
            &key,
            &holder,
            now + ChronoDuration::seconds(CLAIM_FOR_SECS),
            now,
        )
        .await
        .map_err(|e| unavailable("claiming the delivery", &e))?;
    if !matches!(claim, Claim::Claimed { .. }) {
        return Ok(Accepted {
            queued: 0,
            ignored: plan.ignored,
            duplicate: true,
        });
    }

    let queues = &svc.settings.queues;
    let mut queued = 0;
    for (queue, notifications) in [
        (&queues.catalog, plan.catalog),
        (&queues.customers, plan.customers),
    ] {
        if notifications.is_empty() {
            continue;
        }
        let job = WebhookJob {
            kind: JobKind::Webhook,
            shop_id: shop.to_string(),
            delivery: delivery.clone(),
            notifications,
        };
        if let Err(e) = svc.queue.send(queue, &job.to_value(), None).await {
            // Not queued: free the claim so a redelivery can do it. A job already queued for the
            // other queue runs anyway; applying it twice changes nothing (content hash).
            let _ = svc.store.release(shop, &key, &holder, true).await;
            return Err(unavailable("queueing the webhook job", &e));
        }
        queued += 1;
    }
    let answer = json!({"queued": queued});
    if let Err(e) = svc.store.complete(shop, &key, &holder, &answer).await {
        // The jobs are queued; an unfinished claim only expires, so a redelivery after that
        // would be queued again, which is harmless.
        tracing::warn!(shop, error = %e, "could not complete the webhook dedupe record");
    }
    Ok(Accepted {
        queued,
        ignored: plan.ignored,
        duplicate: false,
    })
}

fn unavailable(what: &str, e: &store::StoreError) -> Dropped {
    tracing::error!(error = %e, "webhook receiver failed {what}");
    Dropped::Unavailable
}

/// Shop ids are plain (the router checks the same for every other route).
fn plain_shop_id(shop: &str) -> bool {
    !shop.is_empty()
        && shop.len() <= 64
        && shop
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::webhooks::plan::tests::conn;
    use crate::webhooks::signature::tests::{SECRET, sign};
    use crate::webhooks::{Change, Notice};

    /// A service on the in-memory fakes, with `shop` connected and its webhook secret sealed.
    async fn service_with_shop(shop: &str, secret: &str) -> (Service, store::MemoryQueue) {
        let queue = store::MemoryQueue::new();
        let mut settings = crate::Settings::default();
        settings.queues = crate::settings::Queues {
            catalog: queue.ensure_queue("catalog", "catalog-dlq", 5).url,
            customers: queue.ensure_queue("customers", "customers-dlq", 5).url,
            invoices: queue.ensure_queue("invoices", "invoices-dlq", 5).url,
        };
        let svc = Service::in_memory(settings, queue.clone());
        let sealed = svc
            .sealer
            .seal(shop, &secrecy::SecretString::from(secret.to_string()))
            .await
            .expect("sealed");
        let mut c = conn(true, true);
        c.shop_id = shop.into();
        c.webhook_secret = Some(sealed);
        c.webhook_ids = vec![1, 2, 3, 4, 5];
        svc.store.put_connection(&c).await.expect("saved");
        (svc, queue)
    }

    /// A delivery as sent: the raw body and the signature header, if any.
    struct Sent {
        body: Vec<u8>,
        signature: Option<String>,
    }

    fn delivery(_shop: &str, body: &[u8], signature: Option<String>) -> Sent {
        Sent {
            body: body.to_vec(),
            signature,
        }
    }

    /// The answer's JSON (the service API always sends it with 200: its own tests say so).
    async fn answer(svc: &Service, shop: &str, sent: &Sent) -> Value {
        let answer = receive(
            svc,
            shop,
            Delivery {
                body: &sent.body,
                signature: sent.signature.as_deref(),
                event: None,
            },
        )
        .await;
        serde_json::to_value(answer).expect("an answer is JSON")
    }

    fn envelope(attempt: i64) -> Vec<u8> {
        json!({"Id": "6f1c0b5e", "Attempt": attempt, "Notifications": [
            {"Action": "product.update", "Data": [{"Id": 5001, "Name": "Cà phê sữa đá"}]}]})
        .to_string()
        .into_bytes()
    }

    #[tokio::test]
    async fn r_syn_8_a_retry_with_a_higher_attempt_is_queued_once() {
        // GIVEN a connected shop and a correctly signed delivery
        let (svc, queue) = service_with_shop("s1", SECRET).await;
        let first = envelope(1);
        let a = answer(
            &svc,
            "s1",
            &delivery("s1", &first, Some(format!("sha1={}", sign(SECRET, &first)))),
        )
        .await;
        // THEN it is accepted and one job is on the catalog queue
        assert_eq!(a["accepted"], json!(true), "{}", a);
        assert_eq!(queue.len(&svc.settings.queues.catalog), 1);
        // WHEN KiotViet sends it again with the same Id and a higher Attempt (new body, new MAC)
        let retry = envelope(2);
        let b = answer(
            &svc,
            "s1",
            &delivery("s1", &retry, Some(format!("sha1={}", sign(SECRET, &retry)))),
        )
        .await;
        // THEN it is answered 200 as a duplicate and nothing more is queued
        assert_eq!(b["duplicate"], json!(true), "{}", b);
        assert_eq!(queue.len(&svc.settings.queues.catalog), 1);
    }

    #[tokio::test]
    async fn r_syn_8_forged_or_unsigned_deliveries_get_200_and_queue_nothing() {
        let (svc, queue) = service_with_shop("s1", SECRET).await;
        let body = envelope(1);
        for sig in [
            Some(format!("sha1={}", sign("guessed-secret", &body))),
            None,
            Some("sha1=zz".into()),
        ] {
            let a = answer(&svc, "s1", &delivery("s1", &body, sig)).await;
            assert_eq!(a["accepted"], json!(false), "{}", a);
        }
        assert!(queue.is_empty(&svc.settings.queues.catalog));
        assert!(queue.is_empty(&svc.settings.queues.customers));
    }

    #[tokio::test]
    async fn r_syn_8_unknown_shops_and_malformed_bodies_get_200_with_the_reason() {
        let (svc, queue) = service_with_shop("s1", SECRET).await;
        let body = envelope(1);
        let sig = Some(format!("sha1={}", sign(SECRET, &body)));
        let a = answer(&svc, "nobody", &delivery("nobody", &body, sig.clone())).await;
        assert_eq!(a["reason"].as_str(), Some("unknown_shop"));
        let a = answer(&svc, "a/b", &delivery("a/b", &body, sig)).await;
        assert_eq!(a["reason"].as_str(), Some("unknown_shop"));
        let junk = b"{not json";
        let a = answer(
            &svc,
            "s1",
            &delivery("s1", junk, Some(format!("sha256={}", sign(SECRET, junk)))),
        )
        .await;
        assert_eq!(a["reason"].as_str(), Some("malformed_body"));
        assert!(queue.is_empty(&svc.settings.queues.catalog));
    }

    #[tokio::test]
    async fn r_con_6_a_part_switched_off_after_queueing_is_not_applied() {
        // GIVEN a product change queued while products were on
        let (svc, _queue) = service_with_shop("s1", SECRET).await;
        let job = WebhookJob {
            kind: JobKind::Webhook,
            shop_id: "s1".into(),
            delivery: "d1".into(),
            notifications: vec![Notice {
                action: Change::ProductUpdate,
                ids: vec![5001],
            }],
        };
        // WHEN products are switched off before the job runs
        let mut c = svc
            .store
            .get_connection("s1")
            .await
            .expect("store")
            .expect("connected");
        c.sync.products = false;
        svc.store.put_connection(&c).await.expect("saved");
        // THEN the job ends without asking KiotViet (unreachable here) or writing to Abaha
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        crate::webhooks::apply(&svc, job.clone(), deadline)
            .await
            .expect("nothing to do");
    }
}
