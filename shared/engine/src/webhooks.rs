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
pub mod registration;

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::Duration as ChronoDuration;
use hmac::{Hmac, Mac};
use mapping::kiotviet::{Inventory, WebhookEvent, WebhookPayload};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use store::{Claim, Connection};

pub use apply::apply;

use crate::api::{ApiRequest, ApiResponse};
use crate::error::ApiError;
use crate::service::Service;

/// The header KiotViet signs deliveries in (reference §5.7).
pub const SIGNATURE_HEADER: &str = "x-hub-signature";

/// KiotViet gives a receiver 5 s; everything the receiver does must fit well inside.
const ANSWER_WITHIN: Duration = Duration::from_secs(4);

/// How long a delivery's dedupe claim stays "in progress" before it is completed or, after a
/// crash, may be claimed again.
const CLAIM_FOR_SECS: i64 = 60;

// ---------------------------------------------------------------------------------------------
// Signature
// ---------------------------------------------------------------------------------------------

/// Why a delivery's signature was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the delivery carries no X-Hub-Signature header")]
    Missing,
    #[error("the X-Hub-Signature header is not `[algo=]<hex>`")]
    Malformed,
    #[error("the signature does not match the body")]
    Mismatch,
}

impl SignatureError {
    pub fn reason(self) -> &'static str {
        match self {
            SignatureError::Missing => "missing_signature",
            SignatureError::Malformed | SignatureError::Mismatch => "bad_signature",
        }
    }
}

/// Checks `header` against HMAC-SHA256 of the raw `body` keyed with `secret` (the exact string
/// registered as `Secret`). KiotViet sends `sha1=<hex>` although the MAC is SHA-256; any
/// `algo=` prefix and either hex case are accepted. The comparison is constant-time.
pub fn verify_signature(
    secret: &[u8],
    body: &[u8],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    let value = header
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or(SignatureError::Missing)?;
    let hex_part = match value.split_once('=') {
        Some((algo, rest))
            if !algo.is_empty() && algo.bytes().all(|b| b.is_ascii_alphanumeric()) =>
        {
            rest.trim()
        }
        Some(_) => return Err(SignatureError::Malformed),
        None => value,
    };
    let expected = hex::decode(hex_part).map_err(|_| SignatureError::Malformed)?;
    // HMAC takes a key of any length; the error branch cannot happen but must not panic.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| SignatureError::Mismatch)?;
    mac.update(body);
    mac.verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

/// The `X-Hub-Signature` value KiotViet would send for `body` to `shop`'s hooks (`sha1=<hex>`),
/// or None when the shop has no webhook secret. For tests and local tools that replay deliveries;
/// the secret itself never leaves this function.
pub async fn signature_for_shop(
    svc: &Service,
    shop: &str,
    body: &[u8],
) -> Result<Option<String>, store::StoreError> {
    let Some(sealed) = svc
        .store
        .get_connection(shop)
        .await?
        .and_then(|c| c.webhook_secret)
    else {
        return Ok(None);
    };
    let secret = svc.sealer.open(shop, &sealed).await?;
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()) else {
        return Ok(None);
    };
    mac.update(body);
    Ok(Some(format!(
        "sha1={}",
        hex::encode(mac.finalize().into_bytes())
    )))
}

// ---------------------------------------------------------------------------------------------
// The job handed to the pull functions
// ---------------------------------------------------------------------------------------------

pub use crate::model::{Change, JobKind, Notice, WebhookJob};

// ---------------------------------------------------------------------------------------------
// Receiving
// ---------------------------------------------------------------------------------------------

/// Why a delivery was dropped; the `reason` of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dropped {
    UnknownShop,
    NotRegistered,
    Signature(SignatureError),
    MalformedBody,
    Unavailable,
    Timeout,
}

impl Dropped {
    fn reason(self) -> &'static str {
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
struct Accepted {
    queued: usize,
    ignored: usize,
    duplicate: bool,
}

/// `POST /v1/kiotviet/webhooks/{shop}`. Never an error answer: see the module docs.
pub async fn receive(svc: &Service, shop: &str, req: &ApiRequest) -> Result<ApiResponse, ApiError> {
    let outcome = match tokio::time::timeout(ANSWER_WITHIN, accept(svc, shop, req)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(Dropped::Timeout),
    };
    let body = match outcome {
        Ok(a) => {
            tracing::info!(
                shop,
                queued = a.queued,
                ignored = a.ignored,
                duplicate = a.duplicate,
                "webhook accepted"
            );
            json!({"accepted": true, "queued": a.queued, "ignored": a.ignored, "duplicate": a.duplicate})
        }
        Err(d) => {
            // The body may hold customer data and the header is a MAC: neither is logged.
            tracing::warn!(
                shop,
                reason = d.reason(),
                body_bytes = req.body.len(),
                "webhook dropped"
            );
            json!({"accepted": false, "reason": d.reason()})
        }
    };
    Ok(ApiResponse::json(200, body))
}

async fn accept(svc: &Service, shop: &str, req: &ApiRequest) -> Result<Accepted, Dropped> {
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
    verify_signature(
        secret.expose_secret().as_bytes(),
        &req.body,
        req.header(SIGNATURE_HEADER),
    )
    .map_err(Dropped::Signature)?;

    // Verified: from here on the body is KiotViet's.
    let value: Value = serde_json::from_slice(&req.body).map_err(|_| Dropped::MalformedBody)?;
    let payload = WebhookPayload::from_value(&value).map_err(|_| Dropped::MalformedBody)?;
    let plan = plan(&payload, req.query.get("event").map(String::as_str), &conn);
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
    .unwrap_or_else(|| format!("body-{}", &hex::encode(Sha256::digest(&req.body))[..32]));
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

/// A verified delivery, sorted by queue; what is dropped here is only counted.
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan {
    catalog: Vec<Notice>,
    customers: Vec<Notice>,
    /// Records not applied: switched-off parts (R-CON-6), other branches' stock (R-PRD-5),
    /// events this service does not handle, records without a readable id.
    ignored: usize,
}

/// Sorts a delivery into per-queue notices. `hint` is the `event` query parameter of the URL we
/// registered, which names the event of the bare `{"RemoveId": […]}` form.
fn plan(payload: &WebhookPayload, hint: Option<&str>, conn: &Connection) -> Plan {
    let mut plan = Plan::default();
    let add = |action: Change, ids: Vec<i64>, plan: &mut Plan| {
        if !action.is_switched_on(conn) {
            plan.ignored += ids.len();
            return;
        }
        let ids: Vec<i64> = ids
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if ids.is_empty() {
            return;
        }
        let list = if action.is_catalog() {
            &mut plan.catalog
        } else {
            &mut plan.customers
        };
        match list.iter_mut().find(|n| n.action == action) {
            Some(n) => {
                n.ids.extend(ids);
                n.ids.sort_unstable();
                n.ids.dedup();
            }
            None => list.push(Notice { action, ids }),
        }
    };
    match payload {
        WebhookPayload::Removal(r) => {
            // Our hooks carry the event in their URL. Without it (a hook registered by someone
            // else), a bare removal is read as a product deletion: only ids linked to an Abaha
            // product produce anything (a manual action), and a customer deletion has no effect
            // in Abaha anyway.
            let action = match hint.map(str::trim) {
                Some(h) if h.eq_ignore_ascii_case("customer.delete") => Change::CustomerDelete,
                _ => Change::ProductDelete,
            };
            add(action, r.remove_id.clone(), &mut plan);
        }
        WebhookPayload::Envelope(env) => {
            for n in &env.notifications {
                let records = n.data.len();
                let (action, ids) = match n.event() {
                    WebhookEvent::ProductUpdate => (Change::ProductUpdate, n.ids()),
                    WebhookEvent::ProductDelete => (Change::ProductDelete, n.ids()),
                    WebhookEvent::CustomerUpdate => (Change::CustomerUpdate, n.ids()),
                    WebhookEvent::CustomerDelete => (Change::CustomerDelete, n.ids()),
                    WebhookEvent::StockUpdate => {
                        // R-PRD-5: only the connection's branch is Abaha's stock.
                        let ids: Vec<i64> = n
                            .decode::<Inventory>()
                            .into_iter()
                            .flatten()
                            .filter(|i| i.branch_id.is_none_or(|b| b == conn.branch_id))
                            .filter_map(|i| i.product_id)
                            .collect();
                        (Change::StockUpdate, ids)
                    }
                    WebhookEvent::Other(_) => {
                        plan.ignored += records;
                        continue;
                    }
                };
                plan.ignored += records.saturating_sub(ids.len());
                add(action, ids, &mut plan);
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use store::{SealedSecret, Switches};

    fn sign(secret: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    const SECRET: &str = "c2VjcmV0LXNlY3JldC0xMjM0NTY=";
    const BODY: &[u8] = br#"{"Id":"b1f0","Attempt":1,"Notifications":[]}"#;

    #[test]
    fn r_syn_8_signature_with_sha1_or_sha256_prefix_or_none_verifies() {
        // GIVEN the HMAC-SHA256 of the raw body, hex
        let hex = sign(SECRET, BODY);
        // WHEN it comes with KiotViet's `sha1=` prefix, a `sha256=` prefix, or none
        // THEN each verifies
        for header in [
            format!("sha1={hex}"),
            format!("sha256={hex}"),
            hex.clone(),
            format!("  sha1={hex} "),
        ] {
            assert_eq!(
                verify_signature(SECRET.as_bytes(), BODY, Some(&header)),
                Ok(()),
                "{header}"
            );
        }
    }

    #[test]
    fn r_syn_8_signature_hex_case_does_not_matter() {
        let hex = sign(SECRET, BODY);
        let upper = format!("SHA1={}", hex.to_ascii_uppercase());
        assert_eq!(
            verify_signature(SECRET.as_bytes(), BODY, Some(&upper)),
            Ok(())
        );
    }

    #[test]
    fn r_syn_8_signature_with_the_wrong_key_or_a_changed_body_is_refused() {
        let header = format!("sha1={}", sign(SECRET, BODY));
        // GIVEN a signature made with another key THEN it is a mismatch
        assert_eq!(
            verify_signature(b"another-secret", BODY, Some(&header)),
            Err(SignatureError::Mismatch)
        );
        // GIVEN one byte of the body changed THEN it is a mismatch
        let changed = br#"{"Id":"b1f0","Attempt":2,"Notifications":[]}"#;
        assert_eq!(
            verify_signature(SECRET.as_bytes(), changed, Some(&header)),
            Err(SignatureError::Mismatch)
        );
        // GIVEN a signature of the right length cut short THEN it is a mismatch, not a panic
        let short = &header[..header.len() - 2];
        assert_eq!(
            verify_signature(SECRET.as_bytes(), BODY, Some(short)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn r_syn_8_empty_body_verifies_only_against_its_own_signature() {
        let empty_sig = format!("sha1={}", sign(SECRET, b""));
        assert_eq!(
            verify_signature(SECRET.as_bytes(), b"", Some(&empty_sig)),
            Ok(())
        );
        let body_sig = format!("sha1={}", sign(SECRET, BODY));
        assert_eq!(
            verify_signature(SECRET.as_bytes(), b"", Some(&body_sig)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn r_syn_8_missing_or_malformed_signatures_are_told_apart() {
        assert_eq!(
            verify_signature(SECRET.as_bytes(), BODY, None),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_signature(SECRET.as_bytes(), BODY, Some("  ")),
            Err(SignatureError::Missing)
        );
        for bad in [
            "sha1=xyz",
            "sha1=abc",
            "=00ff",
            "sha-1=00ff",
            "not hex at all",
        ] {
            assert_eq!(
                verify_signature(SECRET.as_bytes(), BODY, Some(bad)),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
    }

    fn conn(products: bool, customers: bool) -> Connection {
        Connection {
            shop_id: "s1".into(),
            account_type: "fnb".into(),
            retailer: "r".into(),
            client_id: "c".into(),
            sealed_secret: SealedSecret::from_base64("x"),
            branch_id: 233443,
            sync: Switches {
                products,
                customers,
                orders: true,
            },
            keep_app_product_status: true,
            invoice_history_days: 30,
            shop_token_hash: None,
            webhook_secret: None,
            webhook_ids: vec![],
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn payload(v: Value) -> WebhookPayload {
        WebhookPayload::from_value(&v).expect("a webhook body")
    }

    #[test]
    fn r_syn_8_products_and_stock_go_to_the_catalog_queue_customers_to_theirs() {
        // GIVEN one delivery with a product, two stock rows (central and another branch) and a customer
        let p = payload(json!({"Id": "d1", "Attempt": 1, "Notifications": [
            {"Action": "product.update", "Data": [{"Id": 5001, "Name": "Cà phê"}]},
            {"Action": "stock.update", "Data": [
                {"ProductId": 5001, "BranchId": 233443, "OnHand": 3},
                {"ProductId": 5001, "BranchId": 999, "OnHand": 9}]},
            {"Action": "customer.update", "Data": [{"Id": 77, "ContactNumber": "0987654321"}]},
            {"Action": "invoice.update", "Data": [{"Id": 1}]}]}));
        // WHEN it is planned
        let plan = plan(&p, None, &conn(true, true));
        // THEN the catalog gets the product and its central stock, customers the customer
        assert_eq!(
            plan.catalog,
            vec![
                Notice {
                    action: Change::ProductUpdate,
                    ids: vec![5001]
                },
                Notice {
                    action: Change::StockUpdate,
                    ids: vec![5001]
                },
            ]
        );
        assert_eq!(
            plan.customers,
            vec![Notice {
                action: Change::CustomerUpdate,
                ids: vec![77]
            }]
        );
        // AND the other branch's stock row and the unknown event are only counted (R-PRD-5)
        assert_eq!(plan.ignored, 2);
    }

    #[test]
    fn r_con_6_switched_off_parts_are_not_queued() {
        let p = payload(json!({"Id": "d1", "Notifications": [
            {"Action": "product.update", "Data": [{"Id": 5001}]},
            {"Action": "customer.update", "Data": [{"Id": 77}]}]}));
        let plan = plan(&p, None, &conn(false, true));
        assert!(plan.catalog.is_empty());
        assert_eq!(plan.customers.len(), 1);
        assert_eq!(plan.ignored, 1);
        let plan = super::plan(&p, None, &conn(false, false));
        assert!(plan.catalog.is_empty() && plan.customers.is_empty());
        assert_eq!(plan.ignored, 2);
    }

    #[test]
    fn r_prd_4_bare_removals_take_their_event_from_the_registered_url() {
        let p = payload(json!({"RemoveId": [5001, 5002]}));
        let products = plan(&p, Some("product.delete"), &conn(true, true));
        assert_eq!(
            products.catalog,
            vec![Notice {
                action: Change::ProductDelete,
                ids: vec![5001, 5002]
            }]
        );
        let customers = plan(&p, Some("customer.delete"), &conn(true, true));
        assert_eq!(
            customers.customers,
            vec![Notice {
                action: Change::CustomerDelete,
                ids: vec![5001, 5002]
            }]
        );
        // Without the hint a removal is read as a product deletion (only linked products matter).
        assert_eq!(
            plan(&p, None, &conn(true, true)).catalog[0].action,
            Change::ProductDelete
        );
    }

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

    fn delivery(shop: &str, body: &[u8], signature: Option<String>) -> ApiRequest {
        let mut req = ApiRequest {
            method: "POST".into(),
            path: format!("/v1/kiotviet/webhooks/{shop}"),
            body: body.to_vec(),
            ..ApiRequest::default()
        };
        if let Some(sig) = signature {
            req.headers.insert(SIGNATURE_HEADER.into(), sig);
        }
        req
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
        let a = receive(
            &svc,
            "s1",
            &delivery("s1", &first, Some(format!("sha1={}", sign(SECRET, &first)))),
        )
        .await
        .expect("always an answer");
        // THEN it is accepted and one job is on the catalog queue
        assert_eq!(a.status, 200);
        assert_eq!(a.body["accepted"], json!(true), "{}", a.body);
        assert_eq!(queue.len(&svc.settings.queues.catalog), 1);
        // WHEN KiotViet sends it again with the same Id and a higher Attempt (new body, new MAC)
        let retry = envelope(2);
        let b = receive(
            &svc,
            "s1",
            &delivery("s1", &retry, Some(format!("sha1={}", sign(SECRET, &retry)))),
        )
        .await
        .expect("always an answer");
        // THEN it is answered 200 as a duplicate and nothing more is queued
        assert_eq!(
            (b.status, b.body["duplicate"].clone()),
            (200, json!(true)),
            "{}",
            b.body
        );
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
            let a = receive(&svc, "s1", &delivery("s1", &body, sig))
                .await
                .expect("always an answer");
            assert_eq!(a.status, 200);
            assert_eq!(a.body["accepted"], json!(false), "{}", a.body);
        }
        assert!(queue.is_empty(&svc.settings.queues.catalog));
        assert!(queue.is_empty(&svc.settings.queues.customers));
    }

    #[tokio::test]
    async fn r_syn_8_unknown_shops_and_malformed_bodies_get_200_with_the_reason() {
        let (svc, queue) = service_with_shop("s1", SECRET).await;
        let body = envelope(1);
        let sig = Some(format!("sha1={}", sign(SECRET, &body)));
        let a = receive(&svc, "nobody", &delivery("nobody", &body, sig.clone()))
            .await
            .expect("answer");
        assert_eq!(
            (a.status, a.body["reason"].as_str()),
            (200, Some("unknown_shop"))
        );
        let a = receive(&svc, "a/b", &delivery("a/b", &body, sig))
            .await
            .expect("answer");
        assert_eq!(
            (a.status, a.body["reason"].as_str()),
            (200, Some("unknown_shop"))
        );
        let junk = b"{not json";
        let a = receive(
            &svc,
            "s1",
            &delivery("s1", junk, Some(format!("sha256={}", sign(SECRET, junk)))),
        )
        .await
        .expect("answer");
        assert_eq!(
            (a.status, a.body["reason"].as_str()),
            (200, Some("malformed_body"))
        );
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
        apply(&svc, job.clone(), deadline)
            .await
            .expect("nothing to do");
    }

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
