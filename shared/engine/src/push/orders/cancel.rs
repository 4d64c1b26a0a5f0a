//! Cancels of Abaha orders (R-ORD-2): never sent to KiotViet. A cancel after the push (or of an
//! order made from a till sale) becomes a manual action, listed once however often it arrives; a
//! cancel before any push is remembered, so a late approval is never sold.

use mapping::api::AbahaOrder;
use mapping::api::{ManualAction, ManualActionKind, Trigger};
use mapping::hash::content_hash;
use retry::Deadline;
use serde_json::{Value, json};
use store::{Claim, Connection, IdKind};

use super::plan::claim_until;
use super::{
    Attempt, CancelAnswer, Failed, Held, OrderPushed, Pushed, Record, Then, find_order, finish,
    in_progress, keep_attempt, lookup_failed, order_content, read_record,
};
use crate::error::{EngineError, ErrorCode};
use crate::service::Service;

/// R-ORD-2: a cancel after the push is not sent to KiotViet; the owner is asked to do it, once
/// however often the cancel arrives.
pub(super) async fn cancel(
    svc: &Service,
    conn: &Connection,
    order: &AbahaOrder,
    deadline: Deadline,
) -> Result<OrderPushed, EngineError> {
    let shop = conn.shop_id.as_str();
    let now = svc.now();
    let held = Held::new(svc, shop, &order.id, deadline, now);
    // Reading through a claim: Completed means pushed. A fresh claim is held while an interrupted
    // push is looked for, then released.
    let stored = match held.claim(now).await? {
        Claim::Completed(v) => match read_record(v)? {
            Record::Pushed(p) => Some(p),
            Record::Cancelled { .. } => None,
        },
        Claim::InProgress { until } => return Err(in_progress(until, now)),
        Claim::Claimed { attempt } => {
            let attempt = attempt.and_then(|a| serde_json::from_value::<Attempt>(a).ok());
            match adopt_interrupted(svc, conn, order, &held, attempt, deadline).await {
                Ok(Some(pushed)) => Some(pushed),
                Ok(None) => None,
                Err((e, then)) => {
                    if let Then::Release { forget_attempt } = then {
                        held.release(forget_attempt).await;
                    }
                    return Err(e);
                }
            }
        }
    };
    let Some(p) = stored else {
        return cancel_unpushed(svc, shop, order).await;
    };
    record_cancel(svc, shop, order, &p).await
}

/// A cancel of an order that was never pushed: an order the invoice pull made is a KiotViet sale
/// to cancel by hand (a manual action, like a pushed one); any other is never to be sent, so a
/// late approval (a webhook retried out of order) cannot sell it.
async fn cancel_unpushed(
    svc: &Service,
    shop: &str,
    order: &AbahaOrder,
) -> Result<OrderPushed, EngineError> {
    if let Some(invoice_id) = svc
        .store
        .kiotviet_for_abaha(shop, IdKind::Invoice, &order.id)
        .await?
    {
        let action = ManualAction::new(
            ManualActionKind::CancelOrderInKiotviet,
            Some(invoice_id),
            Some(order.id.clone()),
            format!(
                "Abaha order {} was cancelled; it is KiotViet FnB invoice {invoice_id}, a sale made at the till. KiotViet FnB cannot be told by the API: cancel the invoice by hand in KiotViet FnB if the sale did not happen.",
                order.code.as_deref().unwrap_or(&order.id)
            ),
        );
        return record_cancel_action(svc, shop, order, action).await;
    }
    // Our claim was released (or the record completed) above; a tombstone is written through a
    // fresh claim so it cannot overwrite a push that started in between.
    let now = svc.now();
    let held = Held::new(svc, shop, &order.id, retry::Deadline::NONE, now);
    match held.claim(now).await? {
        Claim::Claimed { attempt: None } => {
            let tombstone = json!(Record::Cancelled {
                cancelled_before_push: true
            });
            svc.store
                .complete(shop, &held.key, &held.holder, &tombstone)
                .await?;
        }
        Claim::Claimed { attempt: Some(_) } => held.release(false).await,
        Claim::InProgress { until } => return Err(in_progress(until, now)),
        Claim::Completed(_) => {}
    }
    Err(EngineError::new(ErrorCode::StatusNotPushable,
        "This order is cancelled and was never pushed to KiotViet FnB, so there is nothing to do; it will not be sent later either.",
    )
    .with_details(json!({"status": "cancelled"})))
}

/// For a cancel: an interrupted push may have reached KiotViet although it never completed; then
/// the order exists there and must be cancelled by hand like any pushed order. Answers the
/// push when it did; otherwise the claim is released.
async fn adopt_interrupted(
    svc: &Service,
    conn: &Connection,
    order: &AbahaOrder,
    held: &Held<'_>,
    attempt: Option<Attempt>,
    deadline: Deadline,
) -> Result<Option<Pushed>, Failed> {
    let Some(prev) = attempt else {
        held.release(true).await;
        return Ok(None);
    };
    let kv = svc
        .kiotviet_for(conn)
        .await
        .map_err(keep_attempt)?
        .with_deadline(deadline.instant());
    match find_order(&kv, conn.branch_id, &prev).await {
        Ok(Some(found)) => {
            let content = content_hash(&order_content(order));
            finish(svc, order, held, &prev.reference, found, content)
                .await
                .map(Some)
        }
        Ok(None) => {
            held.release(true).await;
            Ok(None)
        }
        Err(e) => {
            let mut error = lookup_failed(&e, &prev.reference);
            error.message = "An earlier push of this order was interrupted and KiotViet FnB could not be asked whether it arrived, so the cancel cannot tell yet whether there is a KiotViet order to cancel. Try again in a few minutes.".into();
            Err(keep_attempt(error))
        }
    }
}

async fn record_cancel(
    svc: &Service,
    shop: &str,
    order: &AbahaOrder,
    p: &Pushed,
) -> Result<OrderPushed, EngineError> {
    let action = ManualAction::new(
        ManualActionKind::CancelOrderInKiotviet,
        Some(p.kiotviet_order_id),
        Some(order.id.clone()),
        format!(
            "Abaha order {} was cancelled after it reached KiotViet FnB. KiotViet FnB cannot be told by the API: cancel order {} by hand in KiotViet FnB.",
            order.code.as_deref().unwrap_or(&order.id),
            p.kiotviet_order_code
        ),
    );
    record_cancel_action(svc, shop, order, action).await
}

/// Lists a cancel's manual action once, however often the cancel arrives.
async fn record_cancel_action(
    svc: &Service,
    shop: &str,
    order: &AbahaOrder,
    action: ManualAction,
) -> Result<OrderPushed, EngineError> {
    let cancel_key = format!("cancel#{}", order.id);
    let holder = uuid::Uuid::new_v4().to_string();
    let now = svc.now();
    match svc
        .store
        .claim(shop, &cancel_key, &holder, claim_until(now, None), now)
        .await?
    {
        // Already recorded: the same answer, and no second line in the report.
        Claim::Completed(action) => {
            return Ok(OrderPushed::CancelRecorded(CancelAnswer {
                manual_action: action,
            }));
        }
        Claim::InProgress { until } => return Err(in_progress(until, now)),
        Claim::Claimed { .. } => {}
    }
    let answer = serde_json::to_value(&action).unwrap_or(Value::Null);
    let recorded = match crate::runs::record_manual_actions(
        svc,
        shop,
        Trigger::Push,
        std::slice::from_ref(&action),
    )
    .await
    .map_err(EngineError::from)
    {
        Ok(()) => svc
            .store
            .complete(shop, &cancel_key, &holder, &answer)
            .await
            .map(|_| ())
            .map_err(EngineError::from),
        Err(e) => Err(e),
    };
    if let Err(e) = recorded {
        if let Err(release) = svc.store.release(shop, &cancel_key, &holder, true).await {
            tracing::warn!(shop, order = %order.id, error = %release, "could not release a cancel claim");
        }
        return Err(e);
    }
    Ok(OrderPushed::CancelRecorded(CancelAnswer {
        manual_action: answer,
    }))
}
