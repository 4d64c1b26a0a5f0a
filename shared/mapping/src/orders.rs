//! Order push rules, Abaha → KiotViet FnB: which statuses are pushed (R-ORD-1) and what happens
//! to repeats and cancels (R-ORD-2, R-ORD-5, R-ORD-7), where the order note goes (R-ORD-3), the
//! delivery time (R-ORD-4), unmapped lines (R-ORD-6), fees and totals (R-ORD-8), and the
//! KiotViet `POST /orders` body built from all of them.

use chrono::{DateTime, Duration, FixedOffset, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::AbahaOrder;
use crate::kiotviet::{DELIVERY_STATUS_PENDING, DeliveryDetail, OrderCreate, OrderDetail};
use crate::time::{kv_local, to_vn};

/// Abaha order statuses (CONTRACTS §1) with Abaha's numeric codes (reference/abaha.md §5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// 1 — cart, not submitted.
    Cart,
    /// 5 — "Đặt hàng".
    Placed,
    /// 10 — "Duyệt".
    Approved,
    /// 15 — "Đóng gói".
    Packed,
    /// 20 — "Xuất kho".
    Shipped,
    /// 25 — "Hoàn thành".
    Completed,
    /// 30.
    Closed,
    /// 0 or -1 — "Hủy".
    Cancelled,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 8] = [
        OrderStatus::Cart,
        OrderStatus::Placed,
        OrderStatus::Approved,
        OrderStatus::Packed,
        OrderStatus::Shipped,
        OrderStatus::Completed,
        OrderStatus::Closed,
        OrderStatus::Cancelled,
    ];

    /// Reads a status name (contract names, case-insensitive; also Abaha's app constant names
    /// and the Vietnamese admin labels) or an Abaha numeric code (number or numeric string).
    pub fn parse(v: &Value) -> Result<OrderStatus, String> {
        match v {
            Value::Number(n) => match n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            {
                Some(code) => Self::from_code(code),
                None => Err(format!("unknown order status code {n}")),
            },
            Value::String(s) => {
                let t = s.trim();
                if let Ok(code) = t.parse::<i64>() {
                    return Self::from_code(code);
                }
                Self::from_name(t).ok_or_else(|| {
                    format!(
                        "unknown order status {t:?} (expected cart, placed, approved, packed, shipped, completed, closed or cancelled)"
                    )
                })
            }
            other => Err(format!(
                "order status must be a name or a code, not {other}"
            )),
        }
    }

    fn from_code(code: i64) -> Result<OrderStatus, String> {
        Ok(match code {
            1 => OrderStatus::Cart,
            5 => OrderStatus::Placed,
            10 => OrderStatus::Approved,
            15 => OrderStatus::Packed,
            20 => OrderStatus::Shipped,
            25 => OrderStatus::Completed,
            30 => OrderStatus::Closed,
            0 | -1 => OrderStatus::Cancelled,
            other => return Err(format!("unknown order status code {other}")),
        })
    }

    fn from_name(name: &str) -> Option<OrderStatus> {
        let n = name.to_lowercase();
        Some(match n.as_str() {
            "cart" | "ordering" => OrderStatus::Cart,
            "placed" | "ready" | "đặt hàng" => OrderStatus::Placed,
            "approved" | "accepted" | "duyệt" => OrderStatus::Approved,
            "packed" | "processing" | "đóng gói" => OrderStatus::Packed,
            "shipped" | "delivery" | "xuất kho" => OrderStatus::Shipped,
            "completed" | "hoàn thành" => OrderStatus::Completed,
            "closed" => OrderStatus::Closed,
            "cancelled" | "canceled" | "cancel" | "hủy" | "huỷ" => OrderStatus::Cancelled,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Cart => "cart",
            OrderStatus::Placed => "placed",
            OrderStatus::Approved => "approved",
            OrderStatus::Packed => "packed",
            OrderStatus::Shipped => "shipped",
            OrderStatus::Completed => "completed",
            OrderStatus::Closed => "closed",
            OrderStatus::Cancelled => "cancelled",
        }
    }

    /// R-ORD-1: placed, approved, packed, shipped and completed orders are pushed.
    pub fn is_pushable(self) -> bool {
        matches!(
            self,
            OrderStatus::Placed
                | OrderStatus::Approved
                | OrderStatus::Packed
                | OrderStatus::Shipped
                | OrderStatus::Completed
        )
    }
}

/// What to do with an incoming Abaha order, given whether it was pushed before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushDecision {
    /// Create it in KiotViet (R-ORD-1).
    Push,
    /// Already pushed: answer with the stored KiotViet order, create nothing (R-ORD-5), and do
    /// not re-push edits — they are made in KiotViet (R-ORD-7).
    Replay,
    /// Cancelled after the push: record it, list "cancel in KiotViet by hand" (R-ORD-2).
    CancelAfterPush,
    /// Not pushable (a cancelled order never pushed is simply not pushed, R-ORD-1/2).
    NotPushable,
}

/// R-ORD-1/2/5/7 as one decision.
pub fn decide(status: OrderStatus, already_pushed: bool) -> PushDecision {
    match (already_pushed, status) {
        (true, OrderStatus::Cancelled) => PushDecision::CancelAfterPush,
        (true, _) => PushDecision::Replay,
        (false, s) if s.is_pushable() => PushDecision::Push,
        (false, _) => PushDecision::NotPushable,
    }
}

/// R-ORD-4 delivery time.
pub struct DeliveryTime;

impl DeliveryTime {
    /// R-ORD-4: a requested delivery time later than `now` is sent unchanged (in +07:00); a
    /// missing one, or one not later than `now` (equal counts as not later), becomes `now` + 1 h.
    /// The computed time is cut to whole seconds, because that is what KiotViet receives and the
    /// answer must show what was sent.
    pub fn for_push(
        requested: Option<DateTime<FixedOffset>>,
        now: DateTime<Utc>,
    ) -> DateTime<FixedOffset> {
        match requested {
            Some(t) if t > now => to_vn(&t),
            _ => {
                let later = now + Duration::hours(1);
                let whole =
                    later - Duration::nanoseconds(i64::from(later.timestamp_subsec_nanos()));
                to_vn(&whole)
            }
        }
    }
}

/// Separator between the order note and a line's own note (R-ORD-3).
pub const NOTE_SEPARATOR: &str = " | ";

/// R-ORD-3: the order note goes on the first line, before that line's own note
/// (`"<order note> | <line note>"`); other lines keep their notes; blank notes are dropped.
pub fn place_order_note<I, S>(order_note: Option<&str>, line_notes: I) -> Vec<Option<String>>
where
    I: IntoIterator<Item = Option<S>>,
    S: AsRef<str>,
{
    let order_note = order_note.map(str::trim).filter(|n| !n.is_empty());
    line_notes
        .into_iter()
        .enumerate()
        .map(|(i, line)| {
            let line = line
                .as_ref()
                .map(|l| l.as_ref().trim())
                .filter(|l| !l.is_empty());
            match (i, order_note, line) {
                (0, Some(o), Some(l)) => Some(format!("{o}{NOTE_SEPARATOR}{l}")),
                (0, Some(o), None) => Some(o.to_owned()),
                (_, _, l) => l.map(str::to_owned),
            }
        })
        .collect()
}

/// What the engine knows when it pushes one order.
#[derive(Debug, Clone, PartialEq)]
pub struct PushContext {
    pub branch_id: i64,
    /// The KiotViet customer found or created for the order (R-CUS-2).
    pub customer_id: Option<i64>,
    /// KiotViet product id of each line, in line order (checked with [`UnmappedLines::check`]).
    pub kiotviet_product_ids: Vec<i64>,
    /// Our idempotency reference; sent as `DeliveryDetail.DeliveryCode` so the order can be found
    /// again if the answer is lost (R-ORD-5).
    pub reference: String,
    pub now: DateTime<Utc>,
}

/// Differences below this (VND) are rounding, not fees.
const MONEY_EPSILON: f64 = 0.5;

/// R-ORD-8: what the Abaha total holds beyond lines + shipping − discount (other fees when
/// positive, unlisted reductions when negative); 0 when Abaha sent no total.
pub fn fee_balance(order: &AbahaOrder) -> f64 {
    let Some(total) = order.total else { return 0.0 };
    let balance = money(total - (lines_total(order) + order.shipping_fee - order.discount));
    if balance.abs() < MONEY_EPSILON {
        0.0
    } else {
        balance
    }
}

/// Σ price × quantity of the order's lines.
pub fn lines_total(order: &AbahaOrder) -> f64 {
    money(order.lines.iter().map(|l| l.price * l.quantity).sum())
}

fn money(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// R-ORD-3/4/8: the KiotViet `POST /orders` body for an Abaha order.
///
/// * lines in order, `Rank` from 1, each with the KiotViet id from `ctx` — a line without one gets
///   id 0, which KiotViet refuses, so a caller that skipped [`UnmappedLines::check`] gets an error,
///   never an order with a line silently missing;
/// * the order note on the first line (R-ORD-3), no order-level `Description`;
/// * `DeliveryDetail` always (it carries the delivery time, R-ORD-4): receiver and phone from the
///   shipping address, else the customer; `LocationName` = "province - district"; `WardName`;
///   `DeliveryCode` = our reference; `Status` 3 (not yet delivered);
/// * money (R-ORD-8): `DeliveryDetail.Price` = shipping fee plus any positive [`fee_balance`]
///   (the one FnB-documented fee field, so KiotViet's total reaches Abaha's); the order discount
///   plus any negative balance goes in `Discount` (retail field, unconfirmed on FnB).
pub fn build_kv_order(order: &AbahaOrder, ctx: &PushContext) -> OrderCreate {
    let notes = place_order_note(
        order.note.as_deref(),
        order.lines.iter().map(|l| l.note.as_deref()),
    );
    let order_details = order
        .lines
        .iter()
        .zip(notes)
        .enumerate()
        .map(|(i, (line, note))| OrderDetail {
            product_id: ctx.kiotviet_product_ids.get(i).copied().unwrap_or(0),
            price: line.price,
            quantity: line.quantity,
            note,
            rank: i32::try_from(i + 1).unwrap_or(i32::MAX),
        })
        .collect();

    let balance = fee_balance(order);
    let delivery_price = money(order.shipping_fee.max(0.0) + balance.max(0.0));
    let discount = money(order.discount.max(0.0) + (-balance).max(0.0));

    let address = order.shipping_address.as_ref();
    let customer = order.customer.as_ref();
    let location = address.map(|a| {
        [a.province.as_deref(), a.district.as_deref()]
            .into_iter()
            .flatten()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" - ")
    });
    let delivery = DeliveryDetail {
        receiver: clean(address.and_then(|a| a.name.as_deref()))
            .or_else(|| clean(customer.and_then(|c| c.name.as_deref()))),
        contact_number: clean(address.and_then(|a| a.phone.as_deref()))
            .or_else(|| clean(customer.and_then(|c| c.phone.as_deref()))),
        address: clean(address.and_then(|a| a.address.as_deref())),
        location_name: clean(location.as_deref()),
        ward_name: clean(address.and_then(|a| a.ward.as_deref())),
        delivery_code: clean(Some(&ctx.reference)),
        expected_delivery: kv_local(&DeliveryTime::for_push(order.delivery_time, ctx.now)),
        price: delivery_price,
        status: DELIVERY_STATUS_PENDING,
        partner_delivery: None,
    };

    OrderCreate {
        branch_id: ctx.branch_id,
        customer_id: ctx.customer_id,
        description: None,
        discount: (discount > 0.0).then_some(discount),
        delivery_detail: Some(delivery),
        order_details,
        surcharges: Vec::new(),
    }
}

fn clean(s: Option<&str>) -> Option<String> {
    let t = s?.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

/// R-ORD-6: the lines of an order that have no KiotViet product, for the 422 `unmapped_lines`
/// answer (`details.lines`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{} order line(s) have no KiotViet product", lines.len())]
pub struct UnmappedLines {
    pub lines: Vec<UnmappedLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnmappedLine {
    /// 0-based position in the order.
    pub index: usize,
    /// The Abaha product id of the line.
    pub product_id: String,
}

impl UnmappedLines {
    /// Given the KiotViet id found for each line (in order), returns all ids when every line is
    /// mapped, or the unmapped lines. (An order without lines is a validation error for the
    /// caller, not a mapping one.)
    pub fn check(order: &AbahaOrder, per_line: &[Option<i64>]) -> Result<Vec<i64>, UnmappedLines> {
        let lines: Vec<UnmappedLine> = order
            .lines
            .iter()
            .enumerate()
            .filter(|(i, _)| per_line.get(*i).copied().flatten().is_none())
            .map(|(index, l)| UnmappedLine {
                index,
                product_id: l.product_id.clone(),
            })
            .collect();
        if lines.is_empty() {
            Ok(per_line
                .iter()
                .take(order.lines.len())
                .flatten()
                .copied()
                .collect())
        } else {
            Err(UnmappedLines { lines })
        }
    }

    /// The Abaha product ids of the unmapped lines.
    pub fn product_ids(&self) -> Vec<String> {
        self.lines.iter().map(|l| l.product_id.clone()).collect()
    }
}

/// R-ORD-6 in its plainest form: the Abaha product ids of lines without a KiotViet id.
pub fn unmapped_product_ids(order: &AbahaOrder, per_line: &[Option<i64>]) -> Vec<String> {
    match UnmappedLines::check(order, per_line) {
        Ok(_) => Vec::new(),
        Err(u) => u.product_ids(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn at(s: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(s).unwrap()
    }

    fn order(v: Value) -> AbahaOrder {
        serde_json::from_value(v).unwrap()
    }

    fn contract_order() -> AbahaOrder {
        order(json!({
            "id": "A-1001", "code": "DH1001", "status": "approved",
            "created_at": "2026-11-29T09:00:00+07:00", "delivery_time": "2026-11-29T12:00:00+07:00",
            "note": "Giao cổng sau",
            "customer": {"id": "U-77", "name": "Nguyễn Văn A", "phone": "0987654321", "email": null},
            "shipping_address": {"name": "Nguyễn Văn A", "phone": "0987654321", "address": "1 Lê Lợi",
                                 "ward": "Bến Nghé", "district": "Quận 1", "province": "Hồ Chí Minh"},
            "lines": [{"product_id": "P-9", "quantity": 2, "price": 35000, "note": "ít đá"}],
            "shipping_fee": 15000, "discount": 0, "total": 85000
        }))
    }

    fn ctx(now: &str) -> PushContext {
        PushContext {
            branch_id: 233443,
            customer_id: Some(880001),
            kiotviet_product_ids: vec![5001],
            reference: "abaha-A-1001".into(),
            now: utc(now),
        }
    }

    // ---- R-ORD-1 -------------------------------------------------------------------------

    #[test]
    fn r_ord_1_every_status_name_parses() {
        let table = [
            ("cart", OrderStatus::Cart, false),
            ("placed", OrderStatus::Placed, true),
            ("approved", OrderStatus::Approved, true),
            ("packed", OrderStatus::Packed, true),
            ("shipped", OrderStatus::Shipped, true),
            ("completed", OrderStatus::Completed, true),
            ("closed", OrderStatus::Closed, false),
            ("cancelled", OrderStatus::Cancelled, false),
        ];
        for (name, status, pushable) in table {
            // GIVEN a contract name in any case WHEN parsed THEN the status and its pushability
            assert_eq!(OrderStatus::parse(&json!(name)), Ok(status), "{name}");
            assert_eq!(
                OrderStatus::parse(&json!(name.to_uppercase())),
                Ok(status),
                "{name}"
            );
            assert_eq!(status.as_str(), name);
            assert_eq!(status.is_pushable(), pushable, "{name}");
        }
    }

    #[test]
    fn r_ord_1_every_status_code_parses() {
        let table = [
            (1, OrderStatus::Cart),
            (5, OrderStatus::Placed),
            (10, OrderStatus::Approved),
            (15, OrderStatus::Packed),
            (20, OrderStatus::Shipped),
            (25, OrderStatus::Completed),
            (30, OrderStatus::Closed),
            (0, OrderStatus::Cancelled),
            (-1, OrderStatus::Cancelled),
        ];
        for (code, status) in table {
            assert_eq!(OrderStatus::parse(&json!(code)), Ok(status), "{code}");
            assert_eq!(
                OrderStatus::parse(&json!(code.to_string())),
                Ok(status),
                "\"{code}\""
            );
            assert_eq!(
                OrderStatus::parse(&json!(code as f64)),
                Ok(status),
                "{code}.0"
            );
        }
    }

    #[test]
    fn r_ord_1_vietnamese_labels_and_app_constants_parse() {
        assert_eq!(
            OrderStatus::parse(&json!("Đặt hàng")),
            Ok(OrderStatus::Placed)
        );
        assert_eq!(
            OrderStatus::parse(&json!("Duyệt")),
            Ok(OrderStatus::Approved)
        );
        assert_eq!(
            OrderStatus::parse(&json!("Đóng gói")),
            Ok(OrderStatus::Packed)
        );
        assert_eq!(
            OrderStatus::parse(&json!("Xuất kho")),
            Ok(OrderStatus::Shipped)
        );
        assert_eq!(
            OrderStatus::parse(&json!("Hoàn thành")),
            Ok(OrderStatus::Completed)
        );
        assert_eq!(
            OrderStatus::parse(&json!("Hủy")),
            Ok(OrderStatus::Cancelled)
        );
        assert_eq!(OrderStatus::parse(&json!("READY")), Ok(OrderStatus::Placed));
        assert_eq!(
            OrderStatus::parse(&json!("canceled")),
            Ok(OrderStatus::Cancelled)
        );
    }

    #[test]
    fn r_ord_1_unknown_statuses_are_refused_with_a_reason() {
        for bad in [
            json!("paid"),
            json!(7),
            json!(10.5),
            json!(null),
            json!(true),
            json!({"a": 1}),
            json!(""),
        ] {
            let err = OrderStatus::parse(&bad).unwrap_err();
            assert!(!err.is_empty(), "{bad}");
        }
    }

    #[test]
    fn r_ord_1_2_5_7_decisions() {
        // GIVEN not yet pushed: pushable statuses push, others (cancelled included) do not
        assert_eq!(decide(OrderStatus::Approved, false), PushDecision::Push);
        assert_eq!(decide(OrderStatus::Cart, false), PushDecision::NotPushable);
        assert_eq!(
            decide(OrderStatus::Cancelled, false),
            PushDecision::NotPushable
        );
        // GIVEN already pushed: a cancel is a manual action, anything else a replay
        assert_eq!(
            decide(OrderStatus::Cancelled, true),
            PushDecision::CancelAfterPush
        );
        assert_eq!(decide(OrderStatus::Shipped, true), PushDecision::Replay);
        assert_eq!(decide(OrderStatus::Closed, true), PushDecision::Replay);
    }

    // ---- R-ORD-4 -------------------------------------------------------------------------

    #[test]
    fn r_ord_4_future_delivery_time_is_sent_unchanged() {
        // GIVEN now = 10:00 VN and a requested delivery at 12:00 VN (given in UTC)
        let now = utc("2026-11-29T03:00:00Z");
        let requested = at("2026-11-29T05:00:00Z");
        // WHEN decided THEN it is the same instant, shown in +07:00
        let sent = DeliveryTime::for_push(Some(requested), now);
        assert_eq!(sent, requested);
        assert_eq!(sent.to_rfc3339(), "2026-11-29T12:00:00+07:00");
    }

    #[test]
    fn r_ord_4_past_delivery_time_gets_one_hour() {
        // GIVEN a delivery time before the push
        let now = utc("2026-11-29T03:00:00Z");
        let sent = DeliveryTime::for_push(Some(at("2026-11-29T09:00:00+07:00")), now);
        // THEN push moment + 1 h, Vietnam time
        assert_eq!(sent.to_rfc3339(), "2026-11-29T11:00:00+07:00");
    }

    #[test]
    fn r_ord_4_missing_delivery_time_gets_one_hour() {
        let now = utc("2026-11-29T03:00:00Z");
        assert_eq!(
            DeliveryTime::for_push(None, now).to_rfc3339(),
            "2026-11-29T11:00:00+07:00"
        );
    }

    #[test]
    fn r_ord_4_delivery_time_equal_to_now_is_not_later_and_gets_one_hour() {
        let now = utc("2026-11-29T03:00:00Z");
        let sent = DeliveryTime::for_push(Some(at("2026-11-29T10:00:00+07:00")), now);
        assert_eq!(sent.to_rfc3339(), "2026-11-29T11:00:00+07:00");
    }

    #[test]
    fn r_ord_4_one_hour_later_is_cut_to_whole_seconds() {
        let now = utc("2026-11-29T03:00:00.750Z");
        assert_eq!(
            DeliveryTime::for_push(None, now).to_rfc3339(),
            "2026-11-29T11:00:00+07:00"
        );
    }

    #[test]
    fn r_ord_4_expected_delivery_is_sent_as_vietnam_local_time() {
        // GIVEN the contract order (delivery 12:00 VN) pushed at 09:30 VN
        let body = build_kv_order(&contract_order(), &ctx("2026-11-29T02:30:00Z"));
        assert_eq!(
            body.delivery_detail.unwrap().expected_delivery,
            "2026-11-29T12:00:00"
        );
        // GIVEN it is pushed at 12:30 VN, past its delivery time
        let body = build_kv_order(&contract_order(), &ctx("2026-11-29T05:30:00Z"));
        assert_eq!(
            body.delivery_detail.unwrap().expected_delivery,
            "2026-11-29T13:30:00"
        );
    }

    // ---- R-ORD-3 -------------------------------------------------------------------------

    #[test]
    fn r_ord_3_order_note_is_prepended_to_the_first_line_note() {
        let notes = place_order_note(Some("Giao cổng sau"), [Some("ít đá"), Some("nóng")]);
        assert_eq!(
            notes,
            vec![
                Some("Giao cổng sau | ít đá".to_owned()),
                Some("nóng".to_owned())
            ]
        );
    }

    #[test]
    fn r_ord_3_order_note_alone_when_the_first_line_has_none() {
        let notes = place_order_note(Some(" Giao cổng sau "), [None, Some("nóng")]);
        assert_eq!(
            notes,
            vec![Some("Giao cổng sau".to_owned()), Some("nóng".to_owned())]
        );
        let notes = place_order_note(Some("x"), [Some("  ")]);
        assert_eq!(notes, vec![Some("x".to_owned())]);
    }

    #[test]
    fn r_ord_3_without_an_order_note_line_notes_are_kept() {
        let notes = place_order_note(None, [Some("ít đá"), None]);
        assert_eq!(notes, vec![Some("ít đá".to_owned()), None]);
        let notes = place_order_note(Some(""), [None::<&str>]);
        assert_eq!(notes, vec![None]);
        assert!(place_order_note(Some("x"), Vec::<Option<String>>::new()).is_empty());
    }

    #[test]
    fn r_ord_3_the_body_has_no_order_level_note() {
        let body = build_kv_order(&contract_order(), &ctx("2026-11-29T02:30:00Z"));
        assert_eq!(body.description, None);
        assert_eq!(
            body.order_details[0].note.as_deref(),
            Some("Giao cổng sau | ít đá")
        );
        assert!(
            serde_json::to_value(&body)
                .unwrap()
                .get("Description")
                .is_none()
        );
    }

    // ---- R-ORD-8 and the body --------------------------------------------------------------

    #[test]
    fn r_ord_8_contract_order_builds_the_reference_body() {
        // GIVEN the contract's example order, mapped to product 5001 and customer 880001
        let body = build_kv_order(&contract_order(), &ctx("2026-11-29T02:30:00Z"));
        // THEN the body is the reference's request shape, fees on the delivery block
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({
                "BranchId": 233443, "CustomerId": 880001,
                "DeliveryDetail": {
                    "Receiver": "Nguyễn Văn A", "ContactNumber": "0987654321", "Address": "1 Lê Lợi",
                    "LocationName": "Hồ Chí Minh - Quận 1", "WardName": "Bến Nghé",
                    "DeliveryCode": "abaha-A-1001", "ExpectedDelivery": "2026-11-29T12:00:00",
                    "Price": 15000.0, "Status": 3
                },
                "OrderDetails": [
                    {"ProductId": 5001, "Price": 35000.0, "Quantity": 2.0, "Note": "Giao cổng sau | ít đá", "Rank": 1}
                ]
            })
        );
    }

    #[test]
    fn r_ord_8_fee_balance_is_zero_when_the_total_adds_up() {
        assert_eq!(fee_balance(&contract_order()), 0.0);
        let mut o = contract_order();
        o.total = None;
        assert_eq!(fee_balance(&o), 0.0);
        o.total = Some(85000.3);
        assert_eq!(fee_balance(&o), 0.0, "sub-VND rounding is not a fee");
    }

    #[test]
    fn r_ord_8_other_fees_are_carried_on_the_delivery_price() {
        // GIVEN an order whose total holds a 5000 fee beyond shipping
        let mut o = contract_order();
        o.total = Some(90000.0);
        assert_eq!(fee_balance(&o), 5000.0);
        // WHEN built THEN the delivery price carries shipping + fee, so KiotViet's total matches
        let body = build_kv_order(&o, &ctx("2026-11-29T02:30:00Z"));
        assert_eq!(body.delivery_detail.unwrap().price, 20000.0);
        assert_eq!(body.discount, None);
    }

    #[test]
    fn r_ord_8_discounts_and_unlisted_reductions_go_to_the_order_discount() {
        // GIVEN a 10000 discount, and a total 2000 lower still (a voucher Abaha did not list)
        let mut o = contract_order();
        o.discount = 10000.0;
        o.total = Some(73000.0);
        assert_eq!(fee_balance(&o), -2000.0);
        // WHEN built THEN the discount is 12000 and the delivery price stays the shipping fee
        let body = build_kv_order(&o, &ctx("2026-11-29T02:30:00Z"));
        assert_eq!(body.discount, Some(12000.0));
        assert_eq!(body.delivery_detail.as_ref().unwrap().price, 15000.0);
        // AND lines + delivery − discount = the Abaha total
        let kv_total = 70000.0 + 15000.0 - 12000.0;
        assert_eq!(kv_total, 73000.0);
    }

    #[test]
    fn r_ord_8_delivery_block_falls_back_to_the_customer() {
        let o = order(json!({
            "id": "A-2", "status": 5,
            "customer": {"name": "Bà B", "phone": "0912345678"},
            "lines": [{"product_id": "P-1", "quantity": 1, "price": 10000}],
            "total": 10000
        }));
        let c = PushContext {
            customer_id: None,
            kiotviet_product_ids: vec![7],
            ..ctx("2026-11-29T02:30:00Z")
        };
        let body = build_kv_order(&o, &c);
        let d = body.delivery_detail.unwrap();
        assert_eq!(d.receiver.as_deref(), Some("Bà B"));
        assert_eq!(d.contact_number.as_deref(), Some("0912345678"));
        assert_eq!(
            (d.address, d.location_name, d.ward_name),
            (None, None, None)
        );
        assert_eq!(d.price, 0.0);
        assert_eq!(body.customer_id, None);
        assert!(
            serde_json::to_value(&body.order_details).unwrap()[0]
                .get("Note")
                .is_none()
        );
    }

    #[test]
    fn r_ord_6_a_line_without_an_id_is_sent_as_zero_never_dropped() {
        let c = PushContext {
            kiotviet_product_ids: vec![],
            ..ctx("2026-11-29T02:30:00Z")
        };
        let body = build_kv_order(&contract_order(), &c);
        assert_eq!(body.order_details.len(), 1);
        assert_eq!(body.order_details[0].product_id, 0);
    }

    // ---- R-ORD-6 -------------------------------------------------------------------------

    #[test]
    fn r_ord_6_unmapped_lines_are_named() {
        // GIVEN three lines of which the 2nd and 3rd have no KiotViet product
        let o = order(json!({
            "id": "A", "status": "placed",
            "lines": [
                {"product_id": "P-1", "quantity": 1, "price": 1},
                {"product_id": "P-2", "quantity": 1, "price": 1},
                {"product_id": "P-3", "quantity": 1, "price": 1}
            ]
        }));
        // WHEN checked THEN those lines are named with their positions
        let err = UnmappedLines::check(&o, &[Some(11), None]).unwrap_err();
        assert_eq!(err.product_ids(), vec!["P-2", "P-3"]);
        assert_eq!(err.lines[0].index, 1);
        assert_eq!(
            serde_json::to_value(&err).unwrap(),
            json!({"lines": [{"index": 1, "product_id": "P-2"}, {"index": 2, "product_id": "P-3"}]})
        );
        assert_eq!(
            unmapped_product_ids(&o, &[None, Some(2), Some(3)]),
            vec!["P-1"]
        );
        // AND when all are mapped the ids come back in order
        assert_eq!(
            UnmappedLines::check(&o, &[Some(1), Some(2), Some(3)]),
            Ok(vec![1, 2, 3])
        );
        assert!(unmapped_product_ids(&o, &[Some(1), Some(2), Some(3)]).is_empty());
    }
}
