//! The order push's decisions, pure (no I/O), so they can be table-tested and reasoned about:
//! what a push is keyed by, what it writes into the KiotViet order to find it again, how long its
//! claim must last, whether a failed `POST /orders` may have created the order, and which orders
//! are refused before anything is written (R-ORD-1, R-ORD-5, money and id bounds).
//!
//! The state machine these decisions drive is drawn in docs/DESIGN.md ("Order push").

use std::time::Duration;

use chrono::{DateTime, Utc};
use kiotviet::KvError;
use mapping::api::AbahaOrder;
use mapping::orders::{OrderStatus, lines_total};
use sha2::{Digest, Sha256};

/// How long after a holder's deadline a `POST /orders` it sent could still land in KiotViet.
/// Our request gives up at the deadline (the client's timeout ends there), so this covers only
/// KiotViet finishing a request whose caller has gone; the claim outlives the holder by this
/// much, so a takeover looks for the order only once it can no longer appear behind its back.
pub const SETTLE: Duration = Duration::from_secs(30);

/// Least time a `POST /orders` must have before the deadline to be sent at all: enough to send
/// it and hear the answer, so a POST is not sent only to be cut off (and then counted as "may
/// have landed").
pub const MIN_POST_TIME: Duration = Duration::from_secs(3);

/// The longest a claim lasts when the caller has no deadline (never on the API path).
pub const NO_DEADLINE_CLAIM: Duration = Duration::from_secs(60);

pub use crate::links::REFERENCE_PREFIX;

/// Longest id (order, customer, product, code) the service API takes, in bytes: DynamoDB keys
/// hold 1 KiB of sort key, and no Abaha id comes near this.
pub const MAX_ID_BYTES: usize = 128;
/// Largest amount of money (VND) in any field or sum: a trillion đồng, far beyond any café
/// order, small enough that sums of a few hundred lines stay exact in an `f64`.
pub const MAX_VND: f64 = 1e12;
/// Largest quantity on one line.
pub const MAX_QUANTITY: f64 = 1e6;
/// Most lines in one order.
pub const MAX_LINES: usize = 500;

/// Longest id kept readable in a reference; longer ones, or ones with other characters, are
/// referenced by a digest.
const READABLE_REFERENCE_ID: usize = 40;

/// The idempotency key of an order push: the Abaha order id, byte for byte as checked
/// ([`check_order`] trims it), so the key and the reference always name the same order.
pub fn idempotency_key(order_id: &str) -> String {
    format!("order#{order_id}")
}

/// Our reference in the KiotViet order (`DeliveryDetail.DeliveryCode`): one per Abaha order id,
/// never per order code (two orders may share a code; each must find only its own sale).
/// Plain ids (upper-case letters, digits, `-_.`) are kept readable (`ABH-A-1001`); any other id
/// becomes `ABH-~` and a 96-bit hex digest, which no plain id can spell (`~` is not in a plain
/// id). So references stay unique even if KiotViet changes their case, and are compared without
/// regard to it.
pub fn reference(order_id: &str) -> String {
    let plain = order_id.len() <= READABLE_REFERENCE_ID
        && !order_id.is_empty()
        && order_id.bytes().all(|b| {
            b.is_ascii_uppercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        });
    if plain {
        format!("{REFERENCE_PREFIX}{order_id}")
    } else {
        let digest = Sha256::digest(order_id.as_bytes());
        format!("{REFERENCE_PREFIX}~{}", hex::encode(&digest[..12]))
    }
}

/// Until when a claim taken `now` holds: the holder's whole time plus [`SETTLE`].
pub fn claim_until(now: DateTime<Utc>, time_left: Option<Duration>) -> DateTime<Utc> {
    let held = time_left.map_or(NO_DEADLINE_CLAIM, |left| left + SETTLE);
    now + chrono::Duration::from_std(held).unwrap_or(chrono::Duration::seconds(60))
}

/// Whole seconds from `now` until `until`, rounded up (at least 1): a client that waits exactly
/// this long as `Retry-After` finds the claim expired.
pub fn seconds_until(until: DateTime<Utc>, now: DateTime<Utc>) -> u64 {
    let ms = (until - now).num_milliseconds().max(1);
    ((ms + 999) / 1000) as u64
}

/// Whether a failed `POST /orders` may have created the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Landed {
    /// KiotViet refused it or it never left: the attempt can be forgotten.
    No,
    /// It may have arrived (no answer, a cut-off answer, a 5xx, out of time): keep the attempt and
    /// the claim, so the next push looks for it once nothing can land any more.
    Maybe,
}

/// Classifies a `POST /orders` failure. The client retries a create only where it cannot have
/// arrived, and says so in the errors it gives up with; anything unknown counts as "maybe".
pub fn landed(error: &KvError) -> Landed {
    match error {
        KvError::Rejected { .. }
        | KvError::InvalidCredentials { .. }
        | KvError::UnknownRetailer { .. }
        | KvError::Unauthorized
        | KvError::RateLimited { .. }
        | KvError::BudgetExhausted { .. }
        | KvError::NotFound { .. }
        | KvError::Transport(_) => Landed::No,
        KvError::Transient { .. } | KvError::Deadline | KvError::Decode { .. } => Landed::Maybe,
    }
}

/// A request field that breaks a bound, named for the 422 answer.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

fn field(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

/// An id of the service API, trimmed: present, at most [`MAX_ID_BYTES`], no control characters.
pub fn check_id(name: &str, raw: &str) -> Result<String, FieldError> {
    let id = raw.trim();
    if id.is_empty() {
        return Err(field(name, format!("{name} is required.")));
    }
    if id.len() > MAX_ID_BYTES {
        return Err(field(
            name,
            format!(
                "{name} is {} bytes long; ids of at most {MAX_ID_BYTES} bytes are accepted.",
                id.len()
            ),
        ));
    }
    if id.chars().any(char::is_control) {
        return Err(field(name, format!("{name} contains control characters.")));
    }
    Ok(id.to_string())
}

fn check_amount(name: &str, value: f64, most: f64) -> Result<(), FieldError> {
    if !value.is_finite() {
        return Err(field(name, format!("{name} must be a number.")));
    }
    if value < 0.0 {
        return Err(field(name, format!("{name} must be 0 or more.")));
    }
    if value > most {
        return Err(field(name, format!("{name} must be at most {most:.0}.")));
    }
    Ok(())
}

/// The order as it will be pushed, with its ids trimmed, or the first bound it breaks.
///
/// Bounds (docs/DESIGN.md "Order push"): ids as [`check_id`]; every amount finite, ≥ 0 and at most
/// [`MAX_VND`]; quantity > 0 and at most [`MAX_QUANTITY`]; at most [`MAX_LINES`] lines; the
/// discount no larger than lines + shipping. The total may differ from lines + shipping −
/// discount: a surplus is other fees and a shortfall an unlisted reduction (R-ORD-8), so
/// KiotViet's total always equals Abaha's, which is never negative.
/// A cancelled order needs only its id (it is never sent).
pub fn check_order(mut order: AbahaOrder, status: OrderStatus) -> Result<AbahaOrder, FieldError> {
    order.id = check_id("id", &order.id)?;
    if let Some(code) = order.code.take() {
        let code = code.trim();
        if !code.is_empty() {
            order.code = Some(check_id("code", code)?);
        }
    }
    if status == OrderStatus::Cancelled {
        return Ok(order);
    }
    if let Some(customer) = order.customer.as_mut()
        && let Some(id) = customer.id.take()
        && !id.trim().is_empty()
    {
        customer.id = Some(check_id("customer.id", &id)?);
    }
    if order.lines.is_empty() {
        return Err(field("lines", "An order needs at least one line."));
    }
    if order.lines.len() > MAX_LINES {
        return Err(field(
            "lines",
            format!("An order has at most {MAX_LINES} lines."),
        ));
    }
    for (i, line) in order.lines.iter_mut().enumerate() {
        line.product_id = check_id(&format!("lines[{i}].product_id"), &line.product_id)?;
        let quantity = format!("lines[{i}].quantity");
        if !(line.quantity.is_finite() && line.quantity > 0.0) {
            return Err(field(
                quantity,
                format!("Line {i}: quantity must be more than 0."),
            ));
        }
        if line.quantity > MAX_QUANTITY {
            return Err(field(
                quantity,
                format!("Line {i}: quantity must be at most {MAX_QUANTITY:.0}."),
            ));
        }
        check_amount(&format!("lines[{i}].price"), line.price, MAX_VND)?;
        check_amount(
            &format!("lines[{i}].amount"),
            line.price * line.quantity,
            MAX_VND,
        )?;
    }
    check_amount("shipping_fee", order.shipping_fee, MAX_VND)?;
    check_amount("discount", order.discount, MAX_VND)?;
    if let Some(total) = order.total {
        check_amount("total", total, MAX_VND)?;
    }
    let goods = lines_total(&order);
    check_amount("lines", goods, MAX_VND)?;
    if order.discount > goods + order.shipping_fee + 0.5 {
        return Err(field(
            "discount",
            format!(
                "The discount ({:.0}) is larger than the order's lines and shipping ({:.0}).",
                order.discount,
                goods + order.shipping_fee
            ),
        ));
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn order(v: serde_json::Value) -> AbahaOrder {
        serde_json::from_value(v).unwrap()
    }

    fn base() -> serde_json::Value {
        json!({"id": " A-1 ", "code": "DH1", "status": "approved",
               "lines": [{"product_id": "P-1", "quantity": 2, "price": 35000}],
               "shipping_fee": 15000, "discount": 0, "total": 85000})
    }

    fn with(path: &str, value: serde_json::Value) -> serde_json::Value {
        let mut v = base();
        let ptr = v.pointer_mut(path).unwrap();
        *ptr = value;
        v
    }

    #[test]
    fn r_ord_5_the_reference_is_one_per_order_id_never_per_code() {
        // Two orders with the same code have different references.
        assert_eq!(reference("A-1"), "ABH-A-1");
        assert_ne!(reference("A-1"), reference("A-2"));
        // Ids a delivery code cannot carry readably are digested, and cannot meet a plain one.
        let odd = reference("đơn 1");
        assert!(odd.starts_with("ABH-~") && odd.len() == 4 + 1 + 24, "{odd}");
        assert_ne!(odd, reference("đơn 2"));
        // Ids differing only in case stay apart even where KiotViet changes the case
        assert_ne!(
            reference("a-1").to_ascii_uppercase(),
            reference("A-1").to_ascii_uppercase()
        );
        let long = "X".repeat(41);
        assert!(reference(&long).starts_with("ABH-~"));
        assert_eq!(
            reference(&"X".repeat(40)),
            format!("ABH-{}", "X".repeat(40))
        );
    }

    #[test]
    fn r_ord_5_key_and_reference_use_the_trimmed_id_byte_for_byte() {
        // GIVEN "SP-1" and "SP-1 " (the same order, one sent with a stray space)
        let a = check_order(order(with("/id", json!("SP-1"))), OrderStatus::Approved).unwrap();
        let b = check_order(order(with("/id", json!("SP-1 "))), OrderStatus::Approved).unwrap();
        // THEN they are one order: same key, same reference
        assert_eq!(a.id, b.id);
        assert_eq!(idempotency_key(&a.id), idempotency_key(&b.id));
        assert_eq!(reference(&a.id), reference(&b.id));
    }

    #[test]
    fn a_claim_outlives_its_holder_by_the_settle_time() {
        let now = Utc::now();
        let left = Duration::from_secs(25);
        assert_eq!(
            claim_until(now, Some(left)),
            now + chrono::Duration::seconds(55)
        );
        assert_eq!(claim_until(now, None), now + chrono::Duration::seconds(60));
    }

    #[test]
    fn retry_after_rounds_up_so_a_client_waiting_that_long_is_never_early() {
        let now = Utc::now();
        let ms = chrono::Duration::milliseconds;
        for (left, secs) in [(ms(54_001), 55), (ms(54_000), 54), (ms(1), 1), (ms(-5), 1)] {
            assert_eq!(seconds_until(now + left, now), secs, "{left}");
        }
    }

    #[test]
    fn r_ord_5_which_post_failures_may_have_created_the_order() {
        let maybe = [
            KvError::Transient {
                status: None,
                message: "timeout".into(),
            },
            KvError::Transient {
                status: Some(502),
                message: "bad gateway".into(),
            },
            KvError::Deadline,
            KvError::Decode {
                path: "/orders".into(),
                message: "cut off".into(),
            },
        ];
        for e in &maybe {
            assert_eq!(landed(e), Landed::Maybe, "{e}");
        }
        let no = [
            KvError::Rejected {
                status: 400,
                message: "Hàng hóa không tồn tại".into(),
                code: None,
            },
            KvError::Unauthorized,
            KvError::RateLimited { retry_after: None },
            KvError::BudgetExhausted {
                retry_at: Utc::now(),
            },
            KvError::InvalidCredentials {
                message: "invalid_client".into(),
            },
        ];
        for e in &no {
            assert_eq!(landed(e), Landed::No, "{e}");
        }
    }

    #[test]
    fn money_and_ids_outside_the_bounds_are_refused_by_field() {
        let cases: [(&str, serde_json::Value, &str); 14] = [
            ("/shipping_fee", json!(-1), "shipping_fee"),
            ("/discount", json!(-5000), "discount"),
            ("/discount", json!(1_000_000), "discount"),
            ("/lines/0/quantity", json!(-2), "lines[0].quantity"),
            ("/lines/0/quantity", json!(0), "lines[0].quantity"),
            ("/lines/0/quantity", json!(1e7), "lines[0].quantity"),
            ("/lines/0/price", json!(1e300), "lines[0].price"),
            ("/lines/0/price", json!(-1), "lines[0].price"),
            ("/lines/0/price", json!(9e11), "lines[0].amount"),
            ("/total", json!(-85000), "total"),
            ("/total", json!(1e13), "total"),
            ("/id", json!("x".repeat(129)), "id"),
            ("/id", json!("A\u{7}1"), "id"),
            (
                "/lines/0/product_id",
                json!("p".repeat(2000)),
                "lines[0].product_id",
            ),
        ];
        for (path, value, named) in cases {
            let err = check_order(order(with(path, value.clone())), OrderStatus::Approved)
                .expect_err(&format!("{path} = {value} must be refused"));
            assert_eq!(err.field, named, "{path} = {value}: {}", err.message);
        }
    }

    #[test]
    fn r_ord_8_sane_orders_pass_and_other_fees_are_allowed() {
        assert!(check_order(order(base()), OrderStatus::Approved).is_ok());
        // A total above lines + shipping (a packaging fee) or below it (an unlisted reduction)
        assert!(check_order(order(with("/total", json!(90000))), OrderStatus::Approved).is_ok());
        assert!(check_order(order(with("/total", json!(80000))), OrderStatus::Approved).is_ok());
        // No total at all
        assert!(check_order(order(with("/total", json!(null))), OrderStatus::Approved).is_ok());
        // A cancelled order needs only its id
        let cancelled = order(json!({"id": "A-2", "status": "cancelled", "lines": []}));
        assert!(check_order(cancelled, OrderStatus::Cancelled).is_ok());
    }
}
