//! Orders Abaha → KiotViet FnB (R-ORD-1…8), exactly once (R-ORD-5).
//!
//! Exactly once rests on two things. An idempotency record is claimed with one conditional write
//! before KiotViet is called, and completed with KiotViet's answer, which later pushes replay. The
//! window that leaves (KiotViet accepted, the process died before the record said so) is closed
//! by an attempt marker written before the call and a reference of ours carried in the KiotViet
//! order (`DeliveryDetail.DeliveryCode`): a push that finds a marker first looks for an order with
//! that reference among KiotViet's recent orders and adopts it instead of creating another.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use kiotviet::KvError;
use mapping::api::AbahaOrder;
use mapping::hash::content_hash;
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

/// The key of the ID-map link from a KiotViet order code to the Abaha order (invoices name their
/// order by code). Codes are strings and the map is keyed by number: a 63-bit hash, negative so it
/// can never meet a real KiotViet id.
pub fn order_code_key(code: &str) -> i64 {
    let digest = Sha256::digest(code.trim().as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&digest[..8]);
    -((i64::from_be_bytes(b) & i64::MAX).max(1))
}

/// Our reference in the KiotViet order: unique per Abaha order, short enough for a delivery code.
pub fn reference(order: &AbahaOrder) -> String {
    format!("ABH-{}", display_code(order))
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

/// `POST /v1/shops/{shop}/orders`.
pub async fn push_from_api(svc: &Service, shop: &str, body: &[u8]) -> Result<ApiResponse, ApiError> {
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
    if status == OrderStatus::Cancelled {
        return cancel(svc, &conn, &order, &key).await;
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
    let content = content_hash(&order_content(&order));
    match svc
        .store
        .claim(shop, &key, now + ChronoDuration::seconds(CLAIM_SECS), now)
        .await?
    {
        Claim::Completed(stored) => Ok(replay(stored, &content)),
        Claim::InProgress { until } => {
            let secs = (until - now).num_seconds().clamp(1, CLAIM_SECS) as u64;
            Err(ApiError::new(
                409,
                "push_in_progress",
                "This order is being pushed right now. Try again in a few seconds; it will not be created twice.",
            )
            .with_retry_after(secs))
        }
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
        match svc.store.kiotviet_for_abaha(shop, IdKind::Product, &line.product_id).await? {
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
    let marker_key = format!("push#{}", order.id);

    // A previous attempt that did not finish may have created the order: look before creating.
    if let Some(prev) = svc.store.get_checkpoint(shop, &marker_key).await? {
        if let Ok(prev) = serde_json::from_value::<Attempt>(prev) {
            let since = prev.started_at - ChronoDuration::minutes(5);
            match kv.recent_orders(since).await {
                Ok(orders) => {
                    if let Some(found) = orders.iter().find(|o| has_reference(o, &reference)) {
                        tracing::info!(shop, order = %order.id, "adopting the KiotViet order an interrupted push created");
                        let id = found.get("id").and_then(Value::as_i64).unwrap_or_default();
                        let code = found.get("code").and_then(Value::as_str).unwrap_or_default().to_string();
                        let expected = found
                            .pointer("/orderDelivery/expectedDelivery")
                            .and_then(Value::as_str)
                            .and_then(|s| mapping::time::parse_kv_datetime(s).ok())
                            .map(|d| d.to_rfc3339());
                        return finish(svc, shop, order, key, &marker_key, id, code, expected, content).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(shop, order = %order.id, error = %e, "could not check KiotViet for an interrupted push");
                    return Err(ApiError::new(
                        502,
                        "kiotviet_unavailable",
                        "An earlier push of this order was interrupted and KiotViet FnB could not be asked whether it arrived. Nothing new was created; try again in a few minutes.",
                    ));
                }
            }
        }
    }

    // R-CUS-2: the order's customer, by the ID map, then by phone, created only if absent.
    let customer_id = match &order.customer {
        Some(c) if c.phone.as_deref().is_some_and(|p| !p.trim().is_empty()) => {
            // A guest without an Abaha id is matched by phone and linked under that phone.
            let abaha_id = c
                .id
                .clone()
                .filter(|id| !id.trim().is_empty())
                .unwrap_or_else(|| format!("phone:{}", mapping::customers::normalize_phone(c.phone.as_deref().unwrap_or_default())));
            let abaha_customer = mapping::api::AbahaCustomer {
                id: abaha_id.clone(),
                name: c.name.clone(),
                phone: c.phone.clone(),
                email: c.email.clone(),
                address: None,
                gender: None,
                birth_date: None,
            };
            match svc.store.kiotviet_for_abaha(shop, IdKind::Customer, &abaha_id).await? {
                Some(id) => Some(id),
                None => match customers::find_or_create(svc, conn, &kv, &abaha_customer).await? {
                    customers::Match::Created(created) => Some(created.id),
                    customers::Match::Found(id) => Some(id),
                },
            }
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
    svc.store
        .put_checkpoint(shop, &marker_key, &serde_json::to_value(&attempt).unwrap_or(Value::Null))
        .await?;
    match kv.create_order(&body).await {
        Ok(created) => {
            let code = created.code.clone().unwrap_or_default();
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
            finish(svc, shop, order, key, &marker_key, created.id, code, expected, content).await
        }
        Err(e) => {
            if matches!(e, KvError::Rejected { .. } | KvError::BudgetExhausted { .. } | KvError::InvalidCredentials { .. }) {
                // KiotViet certainly did not create it: no need to look for it next time.
                svc.store.clear_checkpoint(shop, &marker_key).await?;
            }
            Err(kv_error(e))
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn finish(
    svc: &Service,
    shop: &str,
    order: &AbahaOrder,
    key: &str,
    marker_key: &str,
    kiotviet_order_id: i64,
    kiotviet_order_code: String,
    expected_delivery: Option<String>,
    content: String,
) -> Result<ApiResponse, ApiError> {
    let pushed = Pushed {
        kiotviet_order_id,
        kiotviet_order_code: kiotviet_order_code.clone(),
        expected_delivery: expected_delivery.clone(),
        content,
    };
    // Links first: the invoice pull finds the Abaha order by the KiotViet id or code (R-INV-2).
    let link = IdLink {
        abaha_id: order.id.clone(),
        hash: None,
    };
    let mut links = vec![(kiotviet_order_id, link.clone())];
    if !kiotviet_order_code.is_empty() {
        links.push((order_code_key(&kiotviet_order_code), link));
    }
    svc.store.put_links(shop, IdKind::Order, &links).await?;
    svc.store
        .complete(shop, key, &serde_json::to_value(&pushed).unwrap_or(Value::Null))
        .await?;
    svc.store.clear_checkpoint(shop, marker_key).await?;
    tracing::info!(shop, order = %order.id, kiotviet_order_id, code = %kiotviet_order_code, "order pushed");
    Ok(ApiResponse::json(
        201,
        json!({
            "kiotviet_order_id": kiotviet_order_id,
            "kiotviet_order_code": kiotviet_order_code,
            "expected_delivery": expected_delivery,
            "replayed": false,
        }),
    ))
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

/// R-ORD-2: a cancel after the push is not sent to KiotViet; the owner is asked to do it.
async fn cancel(svc: &Service, conn: &Connection, order: &AbahaOrder, key: &str) -> Result<ApiResponse, ApiError> {
    let shop = conn.shop_id.as_str();
    let now = svc.now();
    // Reading through a claim: Completed means pushed. A fresh claim is released at once.
    let pushed = match svc.store.claim(shop, key, now + ChronoDuration::seconds(5), now).await? {
        Claim::Completed(v) => serde_json::from_value::<Pushed>(v).ok(),
        Claim::Claimed => {
            svc.store.release(shop, key).await?;
            None
        }
        Claim::InProgress { until } => {
            let secs = (until - now).num_seconds().clamp(1, CLAIM_SECS) as u64;
            return Err(ApiError::new(
                409,
                "push_in_progress",
                "This order is being pushed right now; send the cancel again in a few seconds.",
            )
            .with_retry_after(secs));
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
    let action = json!({
        "kind": "cancel_order_in_kiotviet",
        "kiotviet_id": p.kiotviet_order_id,
        "abaha_id": order.id,
        "message": format!(
            "Abaha order {} was cancelled after it reached KiotViet FnB. KiotViet FnB cannot be told by the API: cancel order {} by hand in KiotViet FnB.",
            display_code(order), p.kiotviet_order_code
        ),
    });
    record_manual_action(svc, shop, &action).await?;
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
    svc.store.append_manual_actions(shop, &run_id, std::slice::from_ref(action)).await?;
    Ok(())
}

fn has_reference(order: &Value, reference: &str) -> bool {
    let code = order
        .pointer("/orderDelivery/deliveryCode")
        .or_else(|| order.pointer("/OrderDelivery/DeliveryCode"))
        .and_then(Value::as_str);
    code == Some(reference)
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
            return Err(ApiError::validation(format!("Line {i}: quantity must be more than 0.")));
        }
        if !(l.price.is_finite() && l.price >= 0.0) {
            return Err(ApiError::validation(format!("Line {i}: price must be 0 or more.")));
        }
        if l.product_id.trim().is_empty() {
            return Err(ApiError::validation(format!("Line {i}: product_id is required.")));
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
    }

    #[test]
    fn r_ord_5_reference_is_found_in_the_delivery_block() {
        let o = json!({"id": 1, "code": "DH1", "orderDelivery": {"deliveryCode": "ABH-DH1001"}});
        assert!(has_reference(&o, "ABH-DH1001"));
        assert!(!has_reference(&o, "ABH-DH1002"));
        assert!(!has_reference(&json!({"id": 2}), "ABH-DH1001"));
    }
}
