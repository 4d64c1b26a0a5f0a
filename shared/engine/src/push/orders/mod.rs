//! Orders Abaha → KiotViet FnB (R-ORD-1…8): every Abaha order is at most one KiotViet sale,
//! however pushes interleave, crash or stall (R-ORD-5).
//!
//! One idempotency record per Abaha order id carries the whole state (docs/DESIGN.md "Order
//! push"): a claim fenced by a holder token, the attempt recorded just before `POST /orders`
//! (with our reference, which travels in the KiotViet order's delivery code), and at the end the
//! answer that repeats replay. A claim lasts the holder's deadline plus [`plan::SETTLE`]; a push
//! that finds an unresolved attempt looks for its reference in KiotViet before creating anything.
//! The decisions are pure ([`plan`]); this module does the I/O in the order the state machine
//! needs, and tells a [`PushObserver`] of each step (the model-checking test crashes pushes there).

mod cancel;
pub mod links;
mod lookup;
mod outcome;
pub mod plan;

use chrono::{DateTime, Utc};
use mapping::api::AbahaOrder;
use mapping::hash::content_hash;
use mapping::orders::{OrderStatus, PushContext};
use retry::Deadline;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use store::{Claim, Connection, IdKind};

pub use links::order_code_key;
use plan::{Landed, check_order, claim_until, idempotency_key, reference};

use crate::error::{EngineError, ErrorCode};
use crate::push::customers::kv_error;
use crate::service::Service;
pub use crate::service::{PushObserver, PushStep};

use lookup::{find_order, mapped_lines, order_customer};
pub use outcome::{CancelAnswer, OrderAnswer, OrderPushed};
use outcome::{
    Pushed, Record, answer, from_invoice, in_progress, lookup_failed, order_content, read_record,
    replay,
};

/// Recorded before KiotViet is called; found again only if that attempt did not finish.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Attempt {
    reference: String,
    started_at: DateTime<Utc>,
    /// The order KiotViet answered with, recorded first thing after the POST: a push that
    /// finds it adopts that order without having to list KiotViet's orders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    created: Option<Found>,
}

/// The KiotViet order a push created or found.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Found {
    id: i64,
    code: String,
    expected_delivery: Option<String>,
}

/// `POST /v1/shops/{shop}/orders`: checks the order (R-ORD-1, R-ORD-6), then pushes, cancels or
/// refuses it.
pub async fn push_from_api(
    svc: &Service,
    shop: &str,
    order: AbahaOrder,
    deadline: Deadline,
) -> Result<OrderPushed, EngineError> {
    let status = OrderStatus::parse(&order.status).map_err(|e| {
        EngineError::validation(format!(
            "Unknown order status: {e}. Use one of cart, placed, approved, packed, shipped, completed, closed, cancelled (or Abaha's numeric codes)."
        ))
        .with_details(json!({"field": "status"}))
    })?;
    let order = check_order(order, status).map_err(|e| {
        EngineError::validation(e.message.clone()).with_details(json!({"field": e.field}))
    })?;
    let conn = svc
        .store
        .get_connection(shop)
        .await?
        .ok_or_else(|| EngineError::unknown_shop(shop))?;
    if !conn.sync.orders {
        return Err(EngineError::new(
            ErrorCode::OrdersSyncDisabled,
            "Order sync is switched off for this shop; switch it on in the connection to push orders to KiotViet FnB.",
        ));
    }
    if status == OrderStatus::Cancelled {
        return cancel::cancel(svc, &conn, &order, deadline).await;
    }
    if !status.is_pushable() {
        return Err(EngineError::new(ErrorCode::StatusNotPushable,
            format!(
                "Orders are pushed to KiotViet FnB once placed (placed, approved, packed, shipped or completed); this order is '{}'. Nothing was created.",
                status.as_str()
            ),
        )
        .with_details(json!({"status": status.as_str()})));
    }
    push(svc, &conn, &order, deadline).await
}

/// One claim of one push: the key, the holder token, and until when it holds.
struct Held<'a> {
    svc: &'a Service,
    shop: &'a str,
    key: String,
    holder: String,
    until: DateTime<Utc>,
}

impl<'a> Held<'a> {
    /// A claim on the order's record for a call that starts `now`, lasting its deadline plus
    /// [`plan::SETTLE`], under a holder token of its own.
    fn new(
        svc: &'a Service,
        shop: &'a str,
        order_id: &str,
        deadline: Deadline,
        now: DateTime<Utc>,
    ) -> Self {
        Held {
            svc,
            shop,
            key: idempotency_key(order_id),
            holder: uuid::Uuid::new_v4().to_string(),
            until: claim_until(now, deadline.time_left()),
        }
    }

    async fn claim(&self, now: DateTime<Utc>) -> Result<Claim, store::StoreError> {
        self.svc
            .store
            .claim(self.shop, &self.key, &self.holder, self.until, now)
            .await
    }

    /// Gives the claim up after a failure (fenced: a claim lost to another is left alone).
    async fn release(&self, forget_attempt: bool) {
        if let Err(e) = self
            .svc
            .store
            .release(self.shop, &self.key, &self.holder, forget_attempt)
            .await
        {
            tracing::warn!(shop = self.shop, key = %self.key, error = %e, "could not release a push claim");
        }
    }
}

/// What to do with the claim when a claimed push fails.
enum Then {
    /// Free it at once (keeping any recorded attempt unless told otherwise).
    Release { forget_attempt: bool },
    /// Keep it until it expires: a POST may still land, and no one may look for it before then.
    Keep,
}

/// Pushes an order already checked ([`check_order`]) and pushable (R-ORD-1).
pub async fn push(
    svc: &Service,
    conn: &Connection,
    order: &AbahaOrder,
    deadline: Deadline,
) -> Result<OrderPushed, EngineError> {
    let shop = conn.shop_id.as_str();
    let content = content_hash(&order_content(order));
    let now = svc.now();
    let held = Held::new(svc, shop, &order.id, deadline, now);
    let attempt = match held.claim(now).await? {
        Claim::Completed(stored) => return replay(stored, &content),
        Claim::InProgress { until } => return Err(in_progress(until, now)),
        Claim::Claimed { attempt } => attempt,
    };
    svc.observe_push(&order.id, PushStep::Claimed).await;
    match push_claimed(svc, conn, order, &held, attempt, content, deadline).await {
        Ok(pushed) => Ok(pushed),
        Err((error, then)) => {
            if let Then::Release { forget_attempt } = then {
                held.release(forget_attempt).await;
            }
            Err(error)
        }
    }
}

type Failed = (EngineError, Then);

fn keep_attempt<E: Into<EngineError>>(e: E) -> Failed {
    (
        e.into(),
        Then::Release {
            forget_attempt: false,
        },
    )
}

async fn push_claimed(
    svc: &Service,
    conn: &Connection,
    order: &AbahaOrder,
    held: &Held<'_>,
    attempt: Option<Value>,
    content: String,
    deadline: Deadline,
) -> Result<OrderPushed, Failed> {
    let shop = conn.shop_id.as_str();
    let attempt = attempt.and_then(|a| serde_json::from_value::<Attempt>(a).ok());
    if attempt.is_none()
        && let Some(invoice_id) = svc
            .store
            .kiotviet_for_abaha(shop, IdKind::Invoice, &order.id)
            .await
            .map_err(keep_attempt)?
    {
        // The invoice pull made this Abaha order from a KiotViet sale: pushing it back would
        // sell it twice (R-SYN-4 links both ways).
        held.release(true).await;
        return Ok(from_invoice(order, invoice_id));
    }
    let product_ids = mapped_lines(svc, shop, order).await.map_err(keep_attempt)?;
    let kv = svc
        .kiotviet_for(conn)
        .await
        .map_err(keep_attempt)?
        .with_deadline(deadline.instant());

    // An earlier attempt that did not finish may have created the order: look before creating.
    if let Some(prev) = &attempt {
        match find_order(&kv, conn.branch_id, prev).await {
            Ok(Some(found)) => {
                svc.observe_push(&order.id, PushStep::Created).await;
                return finish(svc, order, held, &prev.reference, found, content)
                    .await
                    .map(|p| OrderPushed::Created(answer(&p, false)));
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(shop, order = %order.id, error = %e, "could not check KiotViet for an interrupted push");
                return Err(keep_attempt(lookup_failed(&e, &prev.reference)));
            }
        }
    }

    let customer_id = order_customer(svc, conn, &kv, order)
        .await
        .map_err(keep_attempt)?;
    let now = svc.now();
    let reference = reference(&order.id);
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
    // The token first, and enough time left to send the POST and hear the answer: what fails
    // before the attempt is recorded certainly sent nothing, so the merchant may retry at once.
    kv.ensure_token()
        .await
        .map_err(|e| keep_attempt(kv_error(e)))?;
    if deadline
        .time_left()
        .is_some_and(|left| left < plan::MIN_POST_TIME)
    {
        return Err(keep_attempt(EngineError::kiotviet_unavailable()));
    }
    let record = json!(Attempt {
        reference: reference.clone(),
        started_at: now,
        created: None,
    });
    let ours = svc
        .store
        .record_attempt(shop, &held.key, &held.holder, &record)
        .await
        .map_err(keep_attempt)?;
    if !ours {
        // Our claim ran out and another push took over: it decides, we send nothing.
        return Err((in_progress(held.until, now), Then::Keep));
    }
    svc.observe_push(&order.id, PushStep::AttemptRecorded).await;
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
            // What KiotViet answered is the one thing no lookup can give back for sure: keep it
            // before anything else can fail.
            let known = json!(Attempt {
                reference: reference.clone(),
                started_at: now,
                created: Some(found.clone()),
            });
            if let Err(e) = svc
                .store
                .record_attempt(shop, &held.key, &held.holder, &known)
                .await
            {
                tracing::warn!(shop, order = %order.id, error = %e, "could not record the created order; a retry looks it up");
            }
            svc.observe_push(&order.id, PushStep::Created).await;
            finish(svc, order, held, &reference, found, content)
                .await
                .map(|p| OrderPushed::Created(answer(&p, false)))
        }
        Err(e) => match plan::landed(&e) {
            // KiotViet certainly did not create it: nothing to look for next time.
            Landed::No => Err((
                kv_error(e),
                Then::Release {
                    forget_attempt: true,
                },
            )),
            Landed::Maybe => {
                tracing::warn!(shop, order = %order.id, error = %e, "order POST may have reached KiotViet");
                let wait = plan::seconds_until(held.until, svc.now());
                Err((
                    EngineError::new(ErrorCode::KiotvietUnavailable,
                        format!(
                            "KiotViet FnB did not confirm this order in time; it may have been created there. Retry in {wait} seconds: the push then checks KiotViet FnB for it before creating anything, so the order is never made twice."
                        ),
                    )
                    .with_retry_after(wait)
                    .with_details(json!({"reference": reference, "may_have_reached_kiotviet": true})),
                    Then::Keep,
                ))
            }
        },
    }
}

/// Records a KiotViet order as this Abaha order's push: links for the invoice pull, then the
/// completed record (replayed from now on; it forgets the attempt in the same write).
async fn finish(
    svc: &Service,
    order: &AbahaOrder,
    held: &Held<'_>,
    reference: &str,
    found: Found,
    content: String,
) -> Result<Pushed, Failed> {
    let shop = held.shop;
    let pushed = Pushed {
        kiotviet_order_id: found.id,
        kiotviet_order_code: found.code,
        expected_delivery: found.expected_delivery,
        content,
    };
    // From here on the order exists in KiotViet: a failure keeps the claim and the attempt, so
    // the next push finds this order by its reference instead of creating another.
    let links = links::push_links(
        &order.id,
        reference,
        pushed.kiotviet_order_id,
        &pushed.kiotviet_order_code,
    );
    let unrecorded = |e: store::StoreError| {
        tracing::error!(shop, order = %order.id, error = %e, "order is in KiotViet but could not be recorded");
        let wait = plan::seconds_until(held.until, svc.now());
        (
            EngineError::new(ErrorCode::ServiceUnavailable,
                format!(
                    "KiotViet FnB has this order as {} but our storage could not record it. Retry in {wait} seconds: the push then confirms that same order and creates nothing new.",
                    pushed.kiotviet_order_code
                ),
            )
            .with_retry_after(wait)
            .with_details(json!({"kiotviet_order_id": pushed.kiotviet_order_id, "kiotviet_order_code": pushed.kiotviet_order_code})),
            Then::Keep,
        )
    };
    svc.store
        .put_links(shop, IdKind::Order, &links)
        .await
        .map_err(unrecorded)?;
    svc.observe_push(&order.id, PushStep::Linked).await;
    let record = json!(pushed);
    let ours = svc
        .store
        .complete(shop, &held.key, &held.holder, &record)
        .await
        .map_err(unrecorded)?;
    if !ours {
        // Another push took over after our claim ran out; it finds this same order by its
        // reference. What we created is still the truth to tell.
        tracing::warn!(shop, order = %order.id, "push finished after its claim was taken over");
    }
    svc.observe_push(&order.id, PushStep::Completed).await;
    tracing::info!(shop, order = %order.id, kiotviet_order_id = pushed.kiotviet_order_id, code = %pushed.kiotviet_order_code, "order pushed");
    Ok(pushed)
}
