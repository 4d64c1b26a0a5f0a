//! Orders Abaha → KiotViet FnB (R-ORD-1…8), exactly once (R-ORD-5).
//!
//! Exactly once rests on two things. An idempotency record is claimed with one conditional write
//! before KiotViet is called, and completed with KiotViet's answer, which later pushes replay. The
//! window that leaves (KiotViet accepted, the process died before the record said so) is closed
//! by an attempt marker written before the call and a reference of ours carried in the KiotViet
//! order (`DeliveryDetail.DeliveryCode`): a push that finds a marker first looks for an order with
//! that reference among KiotViet's recent orders and adopts it instead of creating another.
//!
//! The links a push leaves (KiotViet order id, order code, our reference → Abaha order) are what
//! the invoice pull reads to send an invoice back as the same Abaha order (R-INV-2):
//! [`origins_of`].

use std::collections::HashMap;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use kiotviet::KvError;
use mapping::api::AbahaOrder;
use mapping::hash::content_hash;
use mapping::kiotviet::Invoice;
use mapping::orders::{OrderStatus, PushContext};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use store::{Claim, Connection, IdKind, IdLink};

use crate::api::{ApiResponse, parse_body};
use crate::error::ApiError;
use crate::push::customers::{self, kv_error};
use crate::service::Service;

/// How long a claim keeps other pushes of the same order waiting.
const CLAIM_SECS: i64 = 60;

/// Prefix of our reference in a KiotViet order's delivery code.
const REFERENCE_PREFIX: &str = "ABH-";

/// The key of the ID-map link from a KiotViet order code to the Abaha order (invoices name their
/// order by code). Codes are strings and the map is keyed by number: a 63-bit hash, negative so it
/// can never meet a real KiotViet id.
pub fn order_code_key(code: &str) -> i64 {
    let digest = Sha256::digest(code.trim().as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&digest[..8]);
    -((i64::from_be_bytes(b) & i64::MAX).max(1))
}

/// The key of the link from our reference (as found in an invoice's delivery block) to the Abaha
/// order; kept apart from order codes by its own prefix.
fn reference_key(reference: &str) -> i64 {
    order_code_key(&format!("ref:{}", reference.trim()))
}

/// Our reference in the KiotViet order: unique per Abaha order, short enough for a delivery code.
pub fn reference(order: &AbahaOrder) -> String {
    format!("{REFERENCE_PREFIX}{}", display_code(order))
}

/// The order's code as the shop knows it ("DH1001"), else its id.
fn display_code(order: &AbahaOrder) -> &str {
    order
        .code
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .unwrap_or(order.id.trim())
}

/// What a push answered, kept for replays.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pushed {
    kiotviet_order_id: i64,
    kiotviet_order_code: String,
    expected_delivery: Option<String>,
    /// Hash of the Abaha order as pushed, to tell a repeat from an edit (R-ORD-7).
    content: String,
}

/// Written before KiotViet is called; found again only if that attempt did not finish.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Attempt {
    reference: String,
    started_at: DateTime<Utc>,
}

/// The KiotViet order an interrupted attempt left behind.
struct Found {
    id: i64,
    code: String,
    expected_delivery: Option<String>,
}

/// `POST /v1/shops/{shop}/orders`.
pub async fn push_from_api(
    svc: &Service,
    shop: &str,
    body: &[u8],
) -> Result<ApiResponse, ApiError> {
    let order: AbahaOrder = parse_body(body)?;
    let status = OrderStatus::parse(&order.status).map_err(|e| {
        ApiError::validation(format!(
            "Unknown order status: {e}. Use one of cart, placed, approved, packed, shipped, completed, closed, cancelled (or Abaha's numeric codes)."
        ))
    })?;
    validate(&order, status)?;
    let conn = svc
        .store
        .get_connection(shop)
        .await?
        .ok_or_else(|| ApiError::unknown_shop(shop))?;
    if !conn.sync.orders {
        return Err(ApiError::new(
            422,
            "orders_sync_disabled",
            "Order sync is switched off for this shop; switch it on in the connection to push orders to KiotViet FnB.",
        ));
    }
    let key = format!("order#{}", order.id);
    let content = content_hash(&order_content(&order));
    if status == OrderStatus::Cancelled {
        return cancel(svc, &conn, &order, &key, content).await;
    }
    if !status.is_pushable() {
        return Err(ApiError::new(
            422,
            "status_not_pushable",
            format!(
                "Orders are pushed to KiotViet FnB once placed (placed, approved, packed, shipped or completed); this order is '{}'. Nothing was created.",
                status.as_str()
            ),
        )
        .with_details(json!({"status": status.as_str()})));
    }

    let now = svc.now();
    match svc
        .store
        .claim(shop, &key, now + ChronoDuration::seconds(CLAIM_SECS), now)
        .await?
    {
        Claim::Completed(stored) => Ok(replay(stored, &content)),
        Claim::InProgress { until } => Err(in_progress(until, now)),
        Claim::Claimed => match push_claimed(svc, &conn, &order, &key, content).await {
            Ok(resp) => Ok(resp),
            Err(e) => {
                // The claim is given up so a retry can run; the attempt marker (if KiotViet may
                // have been reached) stays, so that retry looks for our order first.
                if let Err(release) = svc.store.release(shop, &key).await {
                    tracing::warn!(shop, order = %order.id, error = %release, "could not release a push claim");
                }
                Err(e)
            }
        },
    }
}

fn in_progress(until: DateTime<Utc>, now: DateTime<Utc>) -> ApiError {
    let secs = (until - now).num_seconds().clamp(1, CLAIM_SECS) as u64;
    ApiError::new(
        409,
        "push_in_progress",
        "This order is being pushed right now. Try again in a few seconds; it will not be created twice.",
    )
    .with_retry_after(secs)
}

fn marker_key(order: &AbahaOrder) -> String {
    format!("push#{}", order.id)
}

async fn push_claimed(
    svc: &Service,
    conn: &Connection,
    order: &AbahaOrder,
    key: &str,
    content: String,
) -> Result<ApiResponse, ApiError> {
    let shop = conn.shop_id.as_str();
    // R-ORD-6: every line must map to a KiotViet product, or nothing is created.
    let mut product_ids = Vec::with_capacity(order.lines.len());
    let mut unmapped = Vec::new();
    for (i, line) in order.lines.iter().enumerate() {
        match svc
            .store
            .kiotviet_for_abaha(shop, IdKind::Product, &line.product_id)
            .await?
        {
            Some(id) => product_ids.push(id),
            None => unmapped.push(json!({"index": i, "product_id": line.product_id})),
        }
    }
    if !unmapped.is_empty() {
        return Err(ApiError::new(
            422,
            "unmapped_lines",
            format!(
                "{} line(s) name products that do not come from KiotViet FnB (or are not synced yet). Sync products first, or replace those products. Nothing was created.",
                unmapped.len()
            ),
        )
        .with_details(json!({"lines": unmapped})));
    }

    let kv = svc.kiotviet_for(conn).await?;
    let reference = reference(order);
    let marker_key = marker_key(order);

    // A previous attempt that did not finish may have created the order: look before creating.
    if let Some(found) = find_interrupted(svc, conn, &kv, order).await? {
        let pushed = finish(svc, shop, order, key, found, content).await?;
        return Ok(created_answer(&pushed));
    }

    // R-CUS-2: the order's customer, by the ID map, then by phone, created only if absent.
    let customer_id = match &order.customer {
        Some(c) if c.phone.as_deref().is_some_and(|p| !p.trim().is_empty()) => {
            // A guest without an Abaha id is matched by phone and linked under that phone.
            let abaha_id = c
                .id
                .clone()
                .filter(|id| !id.trim().is_empty())
                .unwrap_or_else(|| {
                    format!(
                        "phone:{}",
                        mapping::customers::normalize_phone(c.phone.as_deref().unwrap_or_default())
                    )
                });
            let abaha_customer = mapping::api::AbahaCustomer {
                id: abaha_id,
                name: c.name.clone(),
                phone: c.phone.clone(),
                email: c.email.clone(),
                address: None,
                gender: None,
                birth_date: None,
            };
            Some(
                customers::resolve(svc, conn, &kv, &abaha_customer)
                    .await?
                    .kiotviet_id(),
            )
        }
        _ => None,
    };

    let now = svc.now();
    let body = mapping::orders::build_kv_order(
        order,
        &PushContext {
            branch_id: conn.branch_id,
            customer_id,
            kiotviet_product_ids: product_ids,
            reference: reference.clone(),
            now,
        },
    );
    let attempt = Attempt {
        reference: reference.clone(),
        started_at: now,
    };
    let attempt = serde_json::to_value(&attempt).map_err(|e| {
        tracing::error!(error = %e, "could not encode a push attempt");
        ApiError::internal()
    })?;
    svc.store
        .put_checkpoint(shop, &marker_key, &attempt)
        .await?;
    match kv.create_order(&body).await {
        Ok(created) => {
            let expected = created
                .order_delivery
                .as_ref()
                .and_then(|d| d.expected_delivery)
                .map(|d| d.to_rfc3339())
                .or_else(|| {
                    body.delivery_detail
                        .as_ref()
                        .and_then(|d| mapping::time::parse_kv_datetime(&d.expected_delivery).ok())
                        .map(|d| d.to_rfc3339())
                });
            let found = Found {
                id: created.id,
                code: created.code.clone().unwrap_or_default(),
                expected_delivery: expected,
            };
            let pushed = finish(svc, shop, order, key, found, content).await?;
            Ok(created_answer(&pushed))
        }
        Err(e) => {
            if matches!(
                e,
                KvError::Rejected { .. }
                    | KvError::BudgetExhausted { .. }
                    | KvError::InvalidCredentials { .. }
            ) {
                // KiotViet certainly did not create it: no need to look for it next time.
                svc.store.clear_checkpoint(shop, &marker_key).await?;
            }
            Err(kv_error(e))
        }
    }
}

/// The KiotViet order an earlier, unfinished attempt of this push created, if any. Without an
/// attempt marker there was no such attempt, and KiotViet is not asked.
async fn find_interrupted(
    svc: &Service,
    conn: &Connection,
    kv: &kiotviet::KiotVietClient,
    order: &AbahaOrder,
) -> Result<Option<Found>, ApiError> {
    let shop = conn.shop_id.as_str();
    let Some(prev) = svc.store.get_checkpoint(shop, &marker_key(order)).await? else {
        return Ok(None);
    };
    let Ok(prev) = serde_json::from_value::<Attempt>(prev) else {
        return Ok(None);
    };
    // KiotViet stamps orders with its own clock: look a little further back than we started.
    let since = prev.started_at - ChronoDuration::minutes(5);
    let orders = kv.recent_orders(since).await.map_err(|e| {
        tracing::warn!(shop, order = %order.id, error = %e, "could not check KiotViet for an interrupted push");
        ApiError::new(
            502,
            "kiotviet_unavailable",
            "An earlier push of this order was interrupted and KiotViet FnB could not be asked whether it arrived. Nothing new was created; try again in a few minutes.",
        )
        .with_details(json!({"reference": prev.reference}))
    })?;
    let Some(found) = orders.iter().find(|o| has_reference(o, &prev.reference)) else {
        return Ok(None);
    };
    let (Some(id), Some(code)) = (
        found.get("id").and_then(Value::as_i64),
        found.get("code").and_then(Value::as_str),
    ) else {
        tracing::warn!(shop, order = %order.id, "an order with our reference has no id or code; not adopting it");
        return Ok(None);
    };
    tracing::info!(shop, order = %order.id, kiotviet_order_id = id, "adopting the KiotViet order an interrupted push created");
    let expected_delivery = found
        .pointer("/orderDelivery/expectedDelivery")
        .and_then(Value::as_str)
        .and_then(|s| mapping::time::parse_kv_datetime(s).ok())
        .map(|d| d.to_rfc3339());
    Ok(Some(Found {
        id,
        code: code.to_string(),
        expected_delivery,
    }))
}

/// Records a KiotViet order as this Abaha order's push: links for the invoice pull, then the
/// idempotency record (replayed from now on), then the attempt marker goes.
async fn finish(
    svc: &Service,
    shop: &str,
    order: &AbahaOrder,
    key: &str,
    found: Found,
    content: String,
) -> Result<Pushed, ApiError> {
    let pushed = Pushed {
        kiotviet_order_id: found.id,
        kiotviet_order_code: found.code,
        expected_delivery: found.expected_delivery,
        content,
    };
    // Links first: the invoice pull finds the Abaha order by the KiotViet order code, or by our
    // reference when the invoice list leaves the code out (R-INV-2, see `origins_of`).
    let link = IdLink {
        abaha_id: order.id.clone(),
        hash: None,
    };
    let mut links = vec![(pushed.kiotviet_order_id, link.clone())];
    if !pushed.kiotviet_order_code.is_empty() {
        links.push((order_code_key(&pushed.kiotviet_order_code), link));
        // Order links hold no content to hash; this one keeps the KiotViet code in that slot,
        // so an invoice found by reference still names its order code.
        links.push((
            reference_key(&reference(order)),
            IdLink {
                abaha_id: order.id.clone(),
                hash: Some(pushed.kiotviet_order_code.clone()),
            },
        ));
    }
    svc.store.put_links(shop, IdKind::Order, &links).await?;
    let record = serde_json::to_value(&pushed).map_err(|e| {
        tracing::error!(error = %e, "could not encode a push record");
        ApiError::internal()
    })?;
    svc.store.complete(shop, key, &record).await?;
    svc.store.clear_checkpoint(shop, &marker_key(order)).await?;
    tracing::info!(shop, order = %order.id, kiotviet_order_id = pushed.kiotviet_order_id, code = %pushed.kiotviet_order_code, "order pushed");
    Ok(pushed)
}

fn created_answer(p: &Pushed) -> ApiResponse {
    ApiResponse::json(
        201,
        json!({
            "kiotviet_order_id": p.kiotviet_order_id,
            "kiotviet_order_code": p.kiotviet_order_code,
            "expected_delivery": p.expected_delivery,
            "replayed": false,
        }),
    )
}

/// R-ORD-5 replay; R-ORD-7: an edited order is not pushed again, and the answer says why.
fn replay(stored: Value, content: &str) -> ApiResponse {
    let pushed: Option<Pushed> = serde_json::from_value(stored).ok();
    let Some(p) = pushed else {
        return ApiError::internal().into();
    };
    let mut body = json!({
        "kiotviet_order_id": p.kiotviet_order_id,
        "kiotviet_order_code": p.kiotviet_order_code,
        "expected_delivery": p.expected_delivery,
        "replayed": true,
    });
    if p.content != content {
        body["edited_after_push"] = json!(true);
        body["message"] = json!(format!(
            "This order was already pushed as {}. Edits are made in KiotViet FnB and come back to Abaha with the invoice; nothing was sent.",
            p.kiotviet_order_code
        ));
    }
    ApiResponse::json(200, body)
}

/// R-ORD-2: a cancel after the push is not sent to KiotViet; the owner is asked to do it, once
/// however often the cancel arrives.
async fn cancel(
    svc: &Service,
    conn: &Connection,
    order: &AbahaOrder,
    key: &str,
    content: String,
) -> Result<ApiResponse, ApiError> {
    let shop = conn.shop_id.as_str();
    let now = svc.now();
    // Reading through a claim: Completed means pushed. A fresh claim is held while an interrupted
    // push is looked for, then released.
    let pushed = match svc
        .store
        .claim(shop, key, now + ChronoDuration::seconds(CLAIM_SECS), now)
        .await?
    {
        Claim::Completed(v) => serde_json::from_value::<Pushed>(v).ok(),
        Claim::InProgress { until } => return Err(in_progress(until, now)),
        Claim::Claimed => {
            // An interrupted push may have reached KiotViet although it never completed: then the
            // order exists there and must be cancelled by hand like any pushed order.
            let adopted = match svc.store.get_checkpoint(shop, &marker_key(order)).await {
                Ok(None) => Ok(None),
                Ok(Some(_)) => match svc.kiotviet_for(conn).await {
                    Ok(kv) => match find_interrupted(svc, conn, &kv, order).await {
                        Ok(Some(found)) => finish(svc, shop, order, key, found, content)
                            .await
                            .map(Some),
                        Ok(None) => Ok(None),
                        Err(e) => Err(e),
                    },
                    Err(e) => Err(e.into()),
                },
                Err(e) => Err(e.into()),
            };
            if !matches!(adopted, Ok(Some(_))) {
                svc.store.release(shop, key).await?;
            }
            adopted?
        }
    };
    let Some(p) = pushed else {
        return Err(ApiError::new(
            422,
            "status_not_pushable",
            "This order is cancelled and was never pushed to KiotViet FnB, so there is nothing to do.",
        )
        .with_details(json!({"status": "cancelled"})));
    };

    let cancel_key = format!("cancel#{}", order.id);
    match svc
        .store
        .claim(
            shop,
            &cancel_key,
            now + ChronoDuration::seconds(CLAIM_SECS),
            now,
        )
        .await?
    {
        // Already recorded: the same answer, and no second line in the report.
        Claim::Completed(action) => {
            return Ok(ApiResponse::json(202, json!({"manual_action": action})));
        }
        Claim::InProgress { until } => return Err(in_progress(until, now)),
        Claim::Claimed => {}
    }
    let action = json!({
        "kind": "cancel_order_in_kiotviet",
        "kiotviet_id": p.kiotviet_order_id,
        "abaha_id": order.id,
        "message": format!(
            "Abaha order {} was cancelled after it reached KiotViet FnB. KiotViet FnB cannot be told by the API: cancel order {} by hand in KiotViet FnB.",
            display_code(order), p.kiotviet_order_code
        ),
    });
    let recorded = match record_manual_action(svc, shop, &action).await {
        Ok(()) => svc
            .store
            .complete(shop, &cancel_key, &action)
            .await
            .map_err(ApiError::from),
        Err(e) => Err(e),
    };
    if let Err(e) = recorded {
        if let Err(release) = svc.store.release(shop, &cancel_key).await {
            tracing::warn!(shop, order = %order.id, error = %release, "could not release a cancel claim");
        }
        return Err(e);
    }
    Ok(ApiResponse::json(202, json!({"manual_action": action})))
}

/// Manual actions outside a sync run go to the shop's latest run report, where the owner reads them.
async fn record_manual_action(svc: &Service, shop: &str, action: &Value) -> Result<(), ApiError> {
    let run_id = match svc.store.latest_run(shop).await? {
        Some(r) => r.get("run_id").and_then(Value::as_str).map(str::to_string),
        None => None,
    };
    let run_id = match run_id {
        Some(id) => id,
        None => {
            let now = svc.now();
            let id = format!("actions-{}", now.format("%Y%m%dT%H%M%S%3fZ"));
            let initial = json!({"run_id": id, "state": "succeeded", "trigger": "push", "full": false,
                "started_at": now.to_rfc3339(), "finished_at": now.to_rfc3339(), "entities": {}, "manual_actions": [], "errors": []});
            svc.store.create_run(shop, &id, &initial).await?;
            id
        }
    };
    svc.store
        .append_manual_actions(shop, &run_id, std::slice::from_ref(action))
        .await?;
    Ok(())
}

fn has_reference(order: &Value, reference: &str) -> bool {
    let code = order
        .pointer("/orderDelivery/deliveryCode")
        .or_else(|| order.pointer("/OrderDelivery/DeliveryCode"))
        .and_then(Value::as_str);
    code.map(str::trim) == Some(reference)
}

/// Where an invoice's order came from, when it was one of our pushes (R-INV-2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub abaha_order_id: String,
    pub kiotviet_order_code: Option<String>,
}

/// The Abaha orders that `invoices` were made from, by invoice id; invoices of orders we never
/// pushed are absent (they become new Abaha orders).
///
/// An invoice names its order by `orderCode`. The reference documents that field on the invoice
/// detail only (reference §5.6), and one `GET /invoices/{id}` per invoice would spend the GET
/// budget on every overlap re-read. So the list row decides, without another call: its
/// `orderCode` when present, else our own reference in its delivery block
/// (`invoiceDelivery.deliveryCode`, which every pushed order carries; the pull lists invoices
/// with `includeInvoiceDelivery=true`). An invoice that shows neither is not from our push as
/// far as we can tell, and is sent as a new order.
pub async fn origins_of(
    svc: &Service,
    shop: &str,
    invoices: &[&Invoice],
) -> Result<HashMap<i64, Origin>, store::StoreError> {
    let keys: Vec<(i64, i64)> = invoices
        .iter()
        .filter_map(|inv| {
            let by_code = inv
                .order_code
                .as_deref()
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(order_code_key);
            let by_reference = || {
                inv.invoice_delivery
                    .as_ref()
                    .and_then(|d| d.get("deliveryCode").or_else(|| d.get("DeliveryCode")))
                    .and_then(Value::as_str)
                    .map(str::trim)
                    .filter(|c| c.starts_with(REFERENCE_PREFIX))
                    .map(reference_key)
            };
            by_code.or_else(by_reference).map(|key| (inv.id, key))
        })
        .collect();
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let wanted: Vec<i64> = keys.iter().map(|(_, key)| *key).collect();
    let links = svc.store.get_links(shop, IdKind::Order, &wanted).await?;
    let by_id: HashMap<i64, &&Invoice> = invoices.iter().map(|inv| (inv.id, inv)).collect();
    Ok(keys
        .into_iter()
        .filter_map(|(invoice_id, key)| {
            let link = links.get(&key)?;
            let listed_code = by_id
                .get(&invoice_id)
                .and_then(|inv| inv.order_code.clone());
            Some((
                invoice_id,
                Origin {
                    abaha_order_id: link.abaha_id.clone(),
                    // A reference link carries the code in its hash slot (see `finish`).
                    kiotviet_order_code: listed_code.or_else(|| link.hash.clone()),
                },
            ))
        })
        .collect())
}

/// What counts as "the same order" for R-ORD-7: lines, fees, total, delivery, note, customer.
fn order_content(order: &AbahaOrder) -> Value {
    json!({
        "lines": order.lines, "shipping_fee": order.shipping_fee, "discount": order.discount,
        "total": order.total, "delivery_time": order.delivery_time, "note": order.note,
        "customer": order.customer, "shipping_address": order.shipping_address,
    })
}

fn validate(order: &AbahaOrder, status: OrderStatus) -> Result<(), ApiError> {
    if order.id.trim().is_empty() {
        return Err(ApiError::validation("id (the Abaha order id) is required."));
    }
    if status == OrderStatus::Cancelled {
        return Ok(());
    }
    if order.lines.is_empty() {
        return Err(ApiError::validation("An order needs at least one line."));
    }
    for (i, l) in order.lines.iter().enumerate() {
        if !(l.quantity.is_finite() && l.quantity > 0.0) {
            return Err(ApiError::validation(format!(
                "Line {i}: quantity must be more than 0."
            )));
        }
        if !(l.price.is_finite() && l.price >= 0.0) {
            return Err(ApiError::validation(format!(
                "Line {i}: price must be 0 or more."
            )));
        }
        if l.product_id.trim().is_empty() {
            return Err(ApiError::validation(format!(
                "Line {i}: product_id is required."
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_code_keys_are_negative_and_stable() {
        let a = order_code_key("DH000451");
        assert!(a < 0);
        assert_eq!(a, order_code_key(" DH000451 "));
        assert_ne!(a, order_code_key("DH000452"));
        // A reference never lands on the key of an order code, even one spelled alike.
        assert_ne!(reference_key("ABH-DH1"), order_code_key("ABH-DH1"));
    }

    fn memory_service() -> Service {
        Service::in_memory(crate::Settings::default(), store::MemoryQueue::new())
    }

    fn invoice(v: Value) -> Invoice {
        serde_json::from_value(v).unwrap()
    }

    #[tokio::test]
    async fn r_inv_2_an_invoice_finds_its_pushed_order_by_code_or_by_our_reference() {
        // GIVEN Abaha order A-1 (DH1001) pushed as KiotViet order DH000031
        let svc = memory_service();
        let order: AbahaOrder =
            serde_json::from_value(json!({"id": "A-1", "code": "DH1001", "status": "approved"}))
                .unwrap();
        let found = Found {
            id: 9_100_031,
            code: "DH000031".into(),
            expected_delivery: None,
        };
        finish(&svc, "s", &order, "order#A-1", found, "h".into())
            .await
            .unwrap();

        let by_code = invoice(json!({"id": 1, "orderCode": "DH000031"}));
        let by_reference =
            invoice(json!({"id": 2, "invoiceDelivery": {"deliveryCode": "ABH-DH1001"}}));
        let till_delivery =
            invoice(json!({"id": 3, "invoiceDelivery": {"deliveryCode": "GH000031"}}));
        let walk_in = invoice(json!({"id": 4}));
        let other_order = invoice(json!({"id": 5, "orderCode": "DH000032"}));
        let all = [
            &by_code,
            &by_reference,
            &till_delivery,
            &walk_in,
            &other_order,
        ];

        // WHEN the pull asks where they came from
        let origins = origins_of(&svc, "s", &all).await.unwrap();

        // THEN the code and, without it, our reference lead to A-1 with the KiotViet code
        let a1 = Origin {
            abaha_order_id: "A-1".into(),
            kiotviet_order_code: Some("DH000031".into()),
        };
        assert_eq!(origins.get(&1), Some(&a1));
        assert_eq!(origins.get(&2), Some(&a1));
        // AND invoices of other orders, or of none, are not ours
        assert_eq!(origins.len(), 2, "{origins:?}");
        // AND another shop's links are not seen
        assert!(origins_of(&svc, "other", &all).await.unwrap().is_empty());
    }

    #[test]
    fn r_ord_5_reference_is_found_in_the_delivery_block() {
        let o = json!({"id": 1, "code": "DH1", "orderDelivery": {"deliveryCode": "ABH-DH1001"}});
        assert!(has_reference(&o, "ABH-DH1001"));
        assert!(!has_reference(&o, "ABH-DH1002"));
        assert!(!has_reference(&json!({"id": 2}), "ABH-DH1001"));
    }
}
