//! The simulator's records and KiotViet's datetime conventions.
//!
//! Records keep typed values; JSON is produced per request (see `render.rs`), so absent values
//! are omitted rather than written as `null`, as KiotViet does.

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, Timelike, Utc};
use serde_json::{Map, Value};

/// Vietnam has no daylight saving: +07:00 is exact.
pub(crate) const VN_OFFSET_SECS: i64 = 7 * 3600;

pub(crate) fn vn_local(utc: DateTime<Utc>) -> NaiveDateTime {
    (utc + Duration::seconds(VN_OFFSET_SECS)).naive_utc()
}

/// How many fractional digits a record's datetimes carry (0–7, varying across records as KiotViet
/// output does: `…:12`, `…:12.5`, … `…:12.5730000`).
pub(crate) fn digits_for(id: i64) -> u32 {
    id.rem_euclid(8) as u32
}

/// Truncates to `digits` fractional digits, so that what is printed is exactly what is stored and
/// a client that filters with `>=` on a printed value finds the record again.
pub(crate) fn quantize(dt: NaiveDateTime, digits: u32) -> NaiveDateTime {
    let step = 10u32.pow(9 - digits.min(7));
    let nanos = dt.nanosecond() % 1_000_000_000;
    dt.with_nanosecond(nanos - nanos % step).unwrap_or(dt)
}

/// `2026-05-01T10:52:12.5730000` with `digits` fractional digits (none and no dot for 0).
pub(crate) fn fmt_dt(dt: NaiveDateTime, digits: u32) -> String {
    let base = dt.format("%Y-%m-%dT%H:%M:%S").to_string();
    let digits = digits.min(7) as usize;
    if digits == 0 {
        return base;
    }
    let ticks = format!("{:07}", (dt.nanosecond() % 1_000_000_000) / 100);
    format!("{base}.{}", &ticks[..digits])
}

/// The envelope `timestamp`: 7 digits and the +07:00 offset.
pub(crate) fn fmt_timestamp(now_utc: DateTime<Utc>) -> String {
    format!("{}+07:00", fmt_dt(vn_local(now_utc), 7))
}

/// A query datetime as clients send it: `YYYY-MM-DD[T| ]HH:MM[:SS[.f{0,9}]]` with an optional
/// `Z` / `±HH:MM` / `±HHMM` offset (an unescaped `+` arrives as a space), or a bare date (midnight).
/// A value without offset is Vietnam local time; one with an offset is converted to it.
pub(crate) fn parse_query_dt(raw: &str) -> Option<NaiveDateTime> {
    let s = raw.trim();
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0);
    }
    if s.len() < 16 {
        return None;
    }
    let (date, rest) = s.split_at(10);
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    // Split the clock part from an offset suffix.
    let (clock, offset_secs) = split_offset(rest)?;
    let (hms, frac) = match clock.split_once('.') {
        Some((hms, frac)) => (hms, Some(frac)),
        None => (clock, None),
    };
    let hms = if hms.len() == 5 {
        format!("{hms}:00")
    } else {
        hms.to_string()
    };
    let mut dt =
        NaiveDateTime::parse_from_str(&format!("{date}T{hms}"), "%Y-%m-%dT%H:%M:%S").ok()?;
    if let Some(frac) = frac {
        if frac.is_empty() || frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let nanos: u32 = format!("{frac:0<9}").parse().ok()?;
        dt = dt.with_nanosecond(nanos)?;
    }
    if let Some(off) = offset_secs {
        dt = dt - Duration::seconds(off) + Duration::seconds(VN_OFFSET_SECS);
    }
    Some(dt)
}

fn split_offset(clock: &str) -> Option<(&str, Option<i64>)> {
    if let Some(c) = clock.strip_suffix(['Z', 'z']) {
        return Some((c, Some(0)));
    }
    // The offset starts at the last '+', '-' or ' ' after the seconds.
    let Some(pos) = clock.rfind(['+', '-', ' ']) else {
        return Some((clock, None));
    };
    let (c, off) = clock.split_at(pos);
    let sign = if off.starts_with('-') { -1 } else { 1 };
    let digits: String = off[1..].chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h: i64 = digits[..2].parse().ok()?;
    let m: i64 = digits[2..].parse().ok()?;
    Some((c, Some(sign * (h * 3600 + m * 60))))
}

/// Builds a JSON object that simply leaves out what is absent.
pub(crate) struct Obj(Map<String, Value>);

impl Obj {
    pub(crate) fn new() -> Self {
        Obj(Map::new())
    }

    pub(crate) fn put(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.0.insert(key.to_string(), value.into());
        self
    }

    pub(crate) fn opt<V: Into<Value>>(self, key: &str, value: Option<V>) -> Self {
        match value {
            Some(v) => self.put(key, v),
            None => self,
        }
    }

    pub(crate) fn build(self) -> Value {
        Value::Object(self.0)
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Branch {
    pub id: i64,
    pub name: String,
    pub code: String,
    pub address: String,
    pub contact_number: String,
    pub created: NaiveDateTime,
}

#[derive(Clone, Debug)]
pub(crate) struct Category {
    pub id: i64,
    pub parent_id: Option<i64>,
    pub name: String,
    pub rank: i64,
    pub created: NaiveDateTime,
    pub modified: Option<NaiveDateTime>,
}

/// The two shapes `images` comes in: the doc's `[{"Image": url}]` and the observed `[url]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ImageStyle {
    Urls,
    Objects,
}

#[derive(Clone, Debug)]
pub(crate) struct Product {
    pub id: i64,
    pub code: String,
    pub name: String,
    pub category_id: Option<i64>,
    pub unit: Option<String>,
    pub master_product_id: Option<i64>,
    pub master_unit_id: Option<i64>,
    pub conversion_value: f64,
    pub attributes: Vec<(String, String)>,
    pub has_variants: bool,
    pub is_topping: bool,
    pub is_processed_goods: bool,
    pub allows_sale: bool,
    pub is_active: bool,
    pub is_reward_point: bool,
    pub base_price: f64,
    pub cost: f64,
    pub weight: Option<f64>,
    pub description: Option<String>,
    pub order_template: Option<String>,
    pub images: Vec<String>,
    pub image_style: ImageStyle,
    pub topping_ids: Vec<i64>,
    /// Ids of the products that are other units of this (base-unit) product.
    pub unit_ids: Vec<i64>,
    /// Stock per branch id; a branch not listed has 0.
    pub on_hand: Vec<(i64, f64)>,
    pub created: NaiveDateTime,
    pub modified: Option<NaiveDateTime>,
}

impl Product {
    /// KiotViet's fullName: name, then the attribute values, then a non-base unit in brackets.
    pub(crate) fn full_name(&self) -> String {
        let mut s = self.name.clone();
        for (_, value) in &self.attributes {
            s.push_str(" - ");
            s.push_str(value);
        }
        if let (Some(_), Some(unit)) = (self.master_unit_id, &self.unit) {
            s.push_str(&format!(" ({unit})"));
        }
        s
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Customer {
    pub id: i64,
    pub code: String,
    pub name: Option<String>,
    pub gender: Option<bool>,
    pub birth_date: Option<NaiveDateTime>,
    pub contact_number: Option<String>,
    pub address: Option<String>,
    pub location_name: Option<String>,
    pub ward_name: Option<String>,
    pub email: Option<String>,
    pub organization: Option<String>,
    pub comment: Option<String>,
    /// Some records spell the note `comments` (retail doc) instead of `comment` (FnB code).
    pub comment_plural: bool,
    pub tax_code: Option<String>,
    pub debt: f64,
    pub total_invoiced: f64,
    pub total_point: f64,
    pub branch_id: Option<i64>,
    pub created: NaiveDateTime,
    pub modified: Option<NaiveDateTime>,
}

#[derive(Clone, Debug)]
pub(crate) struct InvoiceLine {
    pub product_id: i64,
    pub product_code: String,
    pub product_name: String,
    pub category_name: Option<String>,
    pub quantity: f64,
    pub price: f64,
    pub discount: f64,
    pub note: Option<String>,
}

impl InvoiceLine {
    pub(crate) fn sub_total(&self) -> f64 {
        self.price * self.quantity - self.discount
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Payment {
    pub id: i64,
    pub code: String,
    pub amount: f64,
    pub method: String,
    pub trans_date: NaiveDateTime,
}

#[derive(Clone, Debug)]
pub(crate) struct Delivery {
    pub receiver: Option<String>,
    pub contact_number: Option<String>,
    pub address: Option<String>,
    pub location_name: Option<String>,
    pub ward_name: Option<String>,
    pub delivery_code: String,
    pub expected: Option<NaiveDateTime>,
    pub price: f64,
    pub status: i64,
    pub partner: Option<(String, String)>,
}

#[derive(Clone, Debug)]
pub(crate) struct CustomerRef {
    pub id: i64,
    pub code: String,
    pub name: Option<String>,
}

#[derive(Clone, Debug)]
pub(crate) struct Invoice {
    pub id: i64,
    pub uuid: String,
    pub code: String,
    pub order_code: Option<String>,
    pub purchase: NaiveDateTime,
    pub branch_id: i64,
    pub sold_by: (i64, String),
    pub customer: Option<CustomerRef>,
    pub discount: f64,
    pub delivery_price: f64,
    pub total_payment: f64,
    pub status: i64,
    pub description: Option<String>,
    pub lines: Vec<InvoiceLine>,
    pub payments: Vec<Payment>,
    pub delivery: Option<Delivery>,
    pub created: NaiveDateTime,
    pub modified: Option<NaiveDateTime>,
}

impl Invoice {
    pub(crate) fn total(&self) -> f64 {
        self.lines.iter().map(InvoiceLine::sub_total).sum::<f64>() - self.discount
            + self.delivery_price
    }
}

pub(crate) fn invoice_status_value(status: i64) -> &'static str {
    match status {
        1 => "Hoàn thành",
        2 => "Đã hủy",
        3 => "Đang xử lý",
        5 => "Không giao được",
        _ => "Không xác định",
    }
}

/// Retail's order statuses (FnB does not document its own).
pub(crate) fn order_status_value(status: i64) -> &'static str {
    match status {
        1 => "Phiếu tạm",
        2 => "Đang giao hàng",
        3 => "Hoàn thành",
        4 => "Đã hủy",
        5 => "Đã xác nhận",
        _ => "Không xác định",
    }
}

#[derive(Clone, Debug)]
pub(crate) struct OrderLine {
    pub uuid: String,
    pub product_id: i64,
    pub product_code: String,
    pub product_name: String,
    pub price: f64,
    pub quantity: f64,
    pub note: Option<String>,
    pub rank: Option<i64>,
}

#[derive(Clone, Debug)]
pub(crate) struct Order {
    pub id: i64,
    pub code: String,
    pub purchase: NaiveDateTime,
    pub branch_id: i64,
    pub customer: Option<CustomerRef>,
    pub sold_by_id: i64,
    pub status: i64,
    pub discount: f64,
    pub total_payment: f64,
    pub description: Option<String>,
    pub lines: Vec<OrderLine>,
    pub delivery: Option<Delivery>,
    /// The body as received, for orders created through `POST /orders`.
    pub request: Option<Value>,
    pub created: NaiveDateTime,
    pub modified: Option<NaiveDateTime>,
}

impl Order {
    pub(crate) fn total(&self) -> f64 {
        self.lines.iter().map(|l| l.price * l.quantity).sum::<f64>() - self.discount
            + self.delivery.as_ref().map_or(0.0, |d| d.price)
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Webhook {
    pub id: i64,
    pub kind: String,
    pub url: String,
    pub is_active: bool,
    pub description: Option<String>,
    pub secret: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dt(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").unwrap()
    }

    #[test]
    fn formats_with_each_digit_count() {
        let t = dt("2026-05-01T10:52:12.5730000");
        assert_eq!(fmt_dt(t, 0), "2026-05-01T10:52:12");
        assert_eq!(fmt_dt(t, 1), "2026-05-01T10:52:12.5");
        assert_eq!(fmt_dt(t, 3), "2026-05-01T10:52:12.573");
        assert_eq!(fmt_dt(t, 7), "2026-05-01T10:52:12.5730000");
    }

    #[test]
    fn quantize_makes_printing_exact() {
        let t = dt("2026-05-01T10:52:12.987654321");
        for d in 0..8 {
            let q = quantize(t, d);
            assert_eq!(parse_query_dt(&fmt_dt(q, d)), Some(q), "digits {d}");
        }
    }

    #[test]
    fn parses_every_query_shape() {
        let want = dt("2026-05-01T00:00:00");
        for s in [
            "2026-05-01",
            "2026-05-01T00:00:00",
            "2026-05-01 00:00:00",
            "2026-05-01T00:00",
            "2026-05-01T00:00:00.0000000",
            "2026-05-01T00:00:00+07:00",
            "2026-05-01T00:00:00 07:00",
            "2026-05-01T00:00:00+0700",
            "2026-04-30T17:00:00Z",
            "2026-05-01T01:00:00.000+08:00",
        ] {
            assert_eq!(parse_query_dt(s), Some(want), "{s}");
        }
        assert_eq!(
            parse_query_dt("2026-05-01T00:00:00.5"),
            Some(dt("2026-05-01T00:00:00.5"))
        );
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-05-01T25:00:00",
            "2026-05-01T00:00:00.x",
        ] {
            assert_eq!(parse_query_dt(bad), None, "{bad}");
        }
    }
}
