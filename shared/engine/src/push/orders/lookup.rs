//! What a push looks up before it creates anything: the lines' KiotViet products, the order's
//! customer, and the order an interrupted attempt may have created.

use chrono::Duration as ChronoDuration;
use kiotviet::{KiotVietClient, KvError};
use mapping::api::AbahaOrder;
use serde_json::{Value, json};
use store::{Connection, IdKind};

use super::{Attempt, Found, links};
use crate::error::{EngineError, ErrorCode};
use crate::push::customers;
use crate::service::Service;

/// R-ORD-6: every line must map to a KiotViet product, or nothing is created.
pub(super) async fn mapped_lines(
    svc: &Service,
    shop: &str,
    order: &AbahaOrder,
) -> Result<Vec<i64>, EngineError> {
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
    if unmapped.is_empty() {
        return Ok(product_ids);
    }
    Err(EngineError::new(ErrorCode::UnmappedLines,
        format!(
            "{} line(s) name products that do not come from KiotViet FnB (or are not synced yet). Sync products first, or replace those products. Nothing was created.",
            unmapped.len()
        ),
    )
    .with_details(json!({"lines": unmapped})))
}

/// R-CUS-2: the order's customer, by the ID map, then by phone, created only if absent.
/// A guest without an Abaha id is matched by phone and linked under that phone.
pub(super) async fn order_customer(
    svc: &Service,
    conn: &Connection,
    kv: &KiotVietClient,
    order: &AbahaOrder,
) -> Result<Option<i64>, EngineError> {
    let Some(c) = &order.customer else {
        return Ok(None);
    };
    let Some(phone) = c.phone.as_deref().filter(|p| !p.trim().is_empty()) else {
        return Ok(None);
    };
    let abaha_id =
        c.id.clone()
            .filter(|id| !id.trim().is_empty())
            .unwrap_or_else(|| format!("phone:{}", mapping::customers::normalize_phone(phone)));
    let abaha_customer = mapping::api::AbahaCustomer {
        id: abaha_id,
        name: c.name.clone(),
        phone: c.phone.clone(),
        email: c.email.clone(),
        address: None,
        gender: None,
        birth_date: None,
    };
    Ok(Some(
        customers::resolve(svc, conn, kv, &abaha_customer)
            .await?
            .kiotviet_id(),
    ))
}

/// The KiotViet order an earlier, unfinished attempt created, if any: the one it recorded, else
/// the one KiotViet lists with its reference. A list that shows no delivery blocks at all cannot
/// tell, and is an error rather than "not there" (that would create the order again).
pub(super) async fn find_order(
    kv: &KiotVietClient,
    branch_id: i64,
    prev: &Attempt,
) -> Result<Option<Found>, KvError> {
    if let Some(created) = &prev.created {
        return Ok(Some(created.clone()));
    }
    // KiotViet stamps orders with its own clock: look a little further back than we started.
    let since = prev.started_at - ChronoDuration::minutes(5);
    // Orders created well after the attempt cannot be its own (it was cut at its deadline).
    let until = prev.started_at + ChronoDuration::hours(1);
    let orders = kv.recent_orders(since, Some(until), branch_id).await?;
    if !orders.is_empty() && orders.iter().all(|o| links::delivery_code(o).is_none()) {
        return Err(KvError::Decode {
            path: "/orders".into(),
            message: "the orders list shows no delivery block, so our reference cannot be seen"
                .into(),
        });
    }
    let Some(found) = orders
        .iter()
        .find(|o| links::has_reference(o, &prev.reference))
    else {
        return Ok(None);
    };
    let (Some(id), Some(code)) = (
        found.get("id").and_then(Value::as_i64),
        found.get("code").and_then(Value::as_str),
    ) else {
        return Err(KvError::Decode {
            path: "/orders".into(),
            message: "an order with our reference has no id or code".into(),
        });
    };
    tracing::info!(
        kiotviet_order_id = id,
        "found the KiotViet order an interrupted push created"
    );
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
