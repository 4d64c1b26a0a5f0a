//! What an order push answers: the typed outcomes, the record repeats replay from, and the
//! errors a push explains to the shop owner.

use chrono::{DateTime, Utc};
use kiotviet::KvError;
use mapping::api::AbahaOrder;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::plan;
use crate::error::{EngineError, ErrorCode};

/// What the completed record of an order says.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub(super) enum Record {
    Pushed(Pushed),
    /// Cancelled before it was ever pushed (R-ORD-2): a late approval is never sent.
    Cancelled {
        cancelled_before_push: bool,
    },
}

/// What a push answered, kept for replays.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Pushed {
    pub(super) kiotviet_order_id: i64,
    pub(super) kiotviet_order_code: String,
    pub(super) expected_delivery: Option<String>,
    /// Hash of the Abaha order as pushed, to tell a repeat from an edit (R-ORD-7).
    pub(super) content: String,
}

/// How a push ended; the service API answers each with its own status.
#[derive(Debug, Clone, PartialEq)]
pub enum OrderPushed {
    /// 201: created in KiotViet now, or found there after an interrupted attempt.
    Created(OrderAnswer),
    /// 200: pushed before; the same answer (R-ORD-5), maybe noting an edit (R-ORD-7).
    Replayed(OrderAnswer),
    /// 200: the order came from a KiotViet invoice (the invoice pull made it); nothing is sent.
    FromInvoice(OrderAnswer),
    /// 202: a cancel after the push, listed as a manual action (R-ORD-2).
    CancelRecorded(CancelAnswer),
}

/// The KiotViet order of an Abaha order (CONTRACTS §1 "Order body" answers).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderAnswer {
    /// None only for an order made from a KiotViet invoice (no KiotViet order exists).
    pub kiotviet_order_id: Option<i64>,
    pub kiotviet_order_code: Option<String>,
    pub expected_delivery: Option<String>,
    pub replayed: bool,
    /// R-ORD-7: a repeat whose content differs from what was pushed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edited_after_push: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kiotviet_invoice_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A cancel after the push: the manual action the owner is asked to do (R-ORD-2).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CancelAnswer {
    pub manual_action: Value,
}

pub(super) fn answer(p: &Pushed, replayed: bool) -> OrderAnswer {
    OrderAnswer {
        kiotviet_order_id: Some(p.kiotviet_order_id),
        kiotviet_order_code: Some(p.kiotviet_order_code.clone()),
        expected_delivery: p.expected_delivery.clone(),
        replayed,
        edited_after_push: None,
        kiotviet_invoice_id: None,
        message: None,
    }
}

pub(super) fn from_invoice(order: &AbahaOrder, invoice_id: i64) -> OrderPushed {
    OrderPushed::FromInvoice(OrderAnswer {
        kiotviet_order_id: None,
        kiotviet_order_code: None,
        expected_delivery: None,
        replayed: true,
        edited_after_push: None,
        kiotviet_invoice_id: Some(invoice_id),
        message: Some(format!(
            "Abaha order {} was made by this service from KiotViet FnB invoice {invoice_id}: the sale is already in KiotViet FnB, so nothing was sent.",
            order.id
        )),
    })
}

/// An interrupted attempt could not be looked for: nothing new is created, and the owner is told
/// what to check when KiotViet cannot list orders at all (`GET /orders` is unconfirmed on FnB).
pub(super) fn lookup_failed(e: &KvError, reference: &str) -> EngineError {
    let message = match e {
        KvError::NotFound { .. } => format!(
            "An earlier push of this order was interrupted, and this KiotViet FnB shop does not let us list its orders to see whether it arrived. Nothing new was created: look in KiotViet FnB for an order whose delivery code is {reference} before creating it by hand."
        ),
        _ => "An earlier push of this order was interrupted and KiotViet FnB could not be asked whether it arrived. Nothing new was created; try again in a few minutes.".to_string(),
    };
    EngineError::new(ErrorCode::KiotvietUnavailable, message)
        .with_retry_after(30)
        .with_details(json!({"reference": reference}))
}

pub(super) fn in_progress(until: DateTime<Utc>, now: DateTime<Utc>) -> EngineError {
    let secs = plan::seconds_until(until, now);
    EngineError::new(ErrorCode::PushInProgress,
        format!(
            "This order is being pushed right now, or an attempt KiotViet FnB has not confirmed may still arrive there. Try again in {secs} seconds; it will not be created twice."
        ),
    )
    .with_retry_after(secs)
}

pub(super) fn read_record(stored: Value) -> Result<Record, EngineError> {
    serde_json::from_value(stored).map_err(|e| {
        tracing::error!(error = %e, "a completed push record cannot be read");
        EngineError::internal()
    })
}

pub(super) fn cancelled_before_push() -> EngineError {
    EngineError::new(ErrorCode::StatusNotPushable,
        "This order was cancelled before it was ever pushed to KiotViet FnB, so it is never sent. Create a new order in Abaha if the sale should happen.",
    )
    .with_details(json!({"status": "cancelled"}))
}

/// R-ORD-5 replay; R-ORD-7: an edited order is not pushed again, and the answer says why.
pub(super) fn replay(stored: Value, content: &str) -> Result<OrderPushed, EngineError> {
    let p = match read_record(stored)? {
        Record::Pushed(p) => p,
        Record::Cancelled { .. } => return Err(cancelled_before_push()),
    };
    let mut body = answer(&p, true);
    if p.content != content {
        body.edited_after_push = Some(true);
        body.message = Some(format!(
            "This order was already pushed as {}. Edits are made in KiotViet FnB and come back to Abaha with the invoice; nothing was sent.",
            p.kiotviet_order_code
        ));
    }
    Ok(OrderPushed::Replayed(body))
}

/// What counts as "the same order" for R-ORD-7: lines, fees, total, delivery, note, customer.
pub(super) fn order_content(order: &AbahaOrder) -> Value {
    json!({
        "lines": order.lines, "shipping_fee": order.shipping_fee, "discount": order.discount,
        "total": order.total, "delivery_time": order.delivery_time, "note": order.note,
        "customer": order.customer, "shipping_address": order.shipping_address,
    })
}
