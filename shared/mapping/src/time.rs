//! Time as the two systems write it: the Vietnam offset, KiotViet's datetime shapes (naive local
//! time with up to seven fractional digits, sometimes an offset), the local format KiotViet takes in
//! query parameters and order bodies, serde helpers for DTO fields, and the injectable [`Clock`].

use std::sync::Mutex;

use chrono::{
    DateTime, Duration, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, TimeZone,
    Utc,
};

/// Vietnam is UTC+7 all year (no daylight saving), so a fixed offset is exact.
pub const VN_OFFSET_SECS: i32 = 7 * 3600;

const VN: FixedOffset = match FixedOffset::east_opt(VN_OFFSET_SECS) {
    Some(offset) => offset,
    // Evaluated at compile time: a bad constant fails the build, never a running function.
    None => panic!("VN_OFFSET_SECS is out of range"),
};

/// The shop-local offset (Asia/Ho_Chi_Minh).
pub fn vn() -> FixedOffset {
    VN
}

/// A string that is not a datetime KiotViet (or Abaha) would send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a datetime ({reason}): {input:?}")]
pub struct TimeError {
    /// The offending input, cut to a readable length.
    pub input: String,
    pub reason: &'static str,
}

impl TimeError {
    fn new(input: &str, reason: &'static str) -> Self {
        // Cut on a char boundary: the input is arbitrary text.
        let input = match input.char_indices().nth(80) {
            Some((cut, _)) => format!("{}…", &input[..cut]),
            None => input.to_owned(),
        };
        TimeError { input, reason }
    }
}

/// Parses `YYYY-MM-DD[T| ]HH:MM[:SS][.f{0,9}][Z|±HH:MM|±HHMM|±HH]` or a bare `YYYY-MM-DD`
/// (midnight). Without an offset the value is Vietnam local time, which is what KiotViet entity
/// dates are. KiotViet writes seven fractional digits (.NET ticks); up to nine are accepted so that
/// RFC 3339 values with nanoseconds (ours included) read back too.
///
/// Works on bytes and only ever indexes ASCII positions it has checked, so no input can panic it.
pub fn parse_kv_datetime(s: &str) -> Result<DateTime<FixedOffset>, TimeError> {
    let b = s.trim().as_bytes();
    let err = |reason| TimeError::new(s, reason);
    let mut cur = Cursor { b, pos: 0 };

    let year = cur
        .digits(4)
        .ok_or_else(|| err("expected a 4-digit year"))?;
    cur.eat(b'-')
        .ok_or_else(|| err("expected '-' after the year"))?;
    let month = cur
        .digits(2)
        .ok_or_else(|| err("expected a 2-digit month"))?;
    cur.eat(b'-')
        .ok_or_else(|| err("expected '-' after the month"))?;
    let day = cur.digits(2).ok_or_else(|| err("expected a 2-digit day"))?;
    let date = NaiveDate::from_ymd_opt(year as i32, month, day)
        .ok_or_else(|| err("no such calendar date"))?;

    if cur.at_end() {
        return attach(NaiveDateTime::new(date, NaiveTime::MIN), None, s);
    }
    match cur.next() {
        Some(b'T' | b't' | b' ') => {}
        _ => return Err(err("expected 'T' or a space between date and time")),
    }
    let hour = cur
        .digits(2)
        .ok_or_else(|| err("expected a 2-digit hour"))?;
    cur.eat(b':')
        .ok_or_else(|| err("expected ':' after the hour"))?;
    let minute = cur
        .digits(2)
        .ok_or_else(|| err("expected 2-digit minutes"))?;
    let second = if cur.peek() == Some(b':') {
        cur.pos += 1;
        cur.digits(2)
            .ok_or_else(|| err("expected 2-digit seconds"))?
    } else {
        0
    };
    let mut nanos = 0u32;
    if cur.peek() == Some(b'.') || cur.peek() == Some(b',') {
        cur.pos += 1;
        let start = cur.pos;
        while matches!(cur.peek(), Some(d) if d.is_ascii_digit()) {
            cur.pos += 1;
        }
        let len = cur.pos - start;
        if len > 9 {
            return Err(err("more than 9 fractional digits"));
        }
        for i in 0..9 {
            let digit = if i < len {
                u32::from(b[start + i] - b'0')
            } else {
                0
            };
            nanos = nanos * 10 + digit;
        }
    }
    let time = NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)
        .ok_or_else(|| err("time of day out of range"))?;
    let naive = NaiveDateTime::new(date, time);

    let offset = match cur.next() {
        None => None,
        Some(b'Z' | b'z') => Some(0),
        Some(sign @ (b'+' | b'-')) => {
            let oh = cur
                .digits(2)
                .ok_or_else(|| err("expected a 2-digit offset hour"))?;
            if cur.peek() == Some(b':') {
                cur.pos += 1;
            }
            let om = if cur.at_end() {
                0
            } else {
                cur.digits(2)
                    .ok_or_else(|| err("expected 2-digit offset minutes"))?
            };
            if oh > 23 || om > 59 {
                return Err(err("offset out of range"));
            }
            let secs = (oh * 3600 + om * 60) as i32;
            Some(if sign == b'-' { -secs } else { secs })
        }
        Some(_) => return Err(err("unexpected text after the time")),
    };
    if !cur.at_end() {
        return Err(err("unexpected text after the offset"));
    }
    attach(naive, offset, s)
}

fn attach(
    naive: NaiveDateTime,
    offset_secs: Option<i32>,
    input: &str,
) -> Result<DateTime<FixedOffset>, TimeError> {
    let offset = match offset_secs {
        None => vn(),
        Some(secs) => FixedOffset::east_opt(secs)
            .ok_or_else(|| TimeError::new(input, "offset out of range"))?,
    };
    offset
        .from_local_datetime(&naive)
        .single()
        .ok_or_else(|| TimeError::new(input, "datetime out of range"))
}

/// A byte cursor over ASCII-checked positions.
struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }
    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }
    fn at_end(&self) -> bool {
        self.pos >= self.b.len()
    }
    fn eat(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }
    /// Exactly `n` ASCII digits as a number (n ≤ 4, so no overflow).
    fn digits(&mut self, n: usize) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            let c = self.next()?;
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + u32::from(c - b'0');
        }
        Some(v)
    }
}

/// The instant in Vietnam time.
pub fn to_vn<Tz: TimeZone>(dt: &DateTime<Tz>) -> DateTime<FixedOffset> {
    dt.with_timezone(&vn())
}

/// `YYYY-MM-DDTHH:MM:SS` in Vietnam time: what KiotViet query parameters and order bodies take.
pub fn kv_local<Tz: TimeZone>(dt: &DateTime<Tz>) -> String {
    to_vn(dt).format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// RFC 3339 with `+07:00` (the service's own wire format for times).
pub fn rfc3339_vn<Tz: TimeZone>(dt: &DateTime<Tz>) -> String {
    to_vn(dt).to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

/// The calendar date in Vietnam (birth dates, purchase days).
pub fn vn_date<Tz: TimeZone>(dt: &DateTime<Tz>) -> NaiveDate {
    to_vn(dt).date_naive()
}

/// Midnight Vietnam time of a calendar date.
pub fn vn_midnight(date: NaiveDate) -> DateTime<FixedOffset> {
    // FixedOffset local times are never ambiguous; `earliest` only returns None out of range.
    vn().from_local_datetime(&date.and_time(NaiveTime::MIN))
        .earliest()
        .unwrap_or_else(|| DateTime::<Utc>::MIN_UTC.with_timezone(&vn()))
}

/// `#[serde(with = "mapping::time::kv_datetime")]` for a required datetime: reads every shape
/// [`parse_kv_datetime`] takes, writes RFC 3339 with `+07:00`.
pub mod kv_datetime {
    use chrono::{DateTime, FixedOffset};
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub fn serialize<S: Serializer>(dt: &DateTime<FixedOffset>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::rfc3339_vn(dt))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<FixedOffset>, D::Error> {
        let s = std::borrow::Cow::<str>::deserialize(d)?;
        super::parse_kv_datetime(&s).map_err(D::Error::custom)
    }
}

/// `#[serde(default, with = "mapping::time::kv_datetime_opt")]` for an optional datetime: absent,
/// `null` and `""` (KiotViet and form-fed Abaha values both use it) read as `None`.
pub mod kv_datetime_opt {
    use chrono::{DateTime, FixedOffset};
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub fn serialize<S: Serializer>(
        dt: &Option<DateTime<FixedOffset>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match dt {
            Some(dt) => super::kv_datetime::serialize(dt, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<DateTime<FixedOffset>>, D::Error> {
        match Option::<std::borrow::Cow<str>>::deserialize(d)? {
            None => Ok(None),
            Some(s) if s.trim().is_empty() => Ok(None),
            Some(s) => super::parse_kv_datetime(&s)
                .map(Some)
                .map_err(D::Error::custom),
        }
    }
}

/// `#[serde(default, with = "mapping::time::date_opt")]` for a calendar date (`YYYY-MM-DD`);
/// also reads a full datetime (its Vietnam date), `null` and `""`.
pub mod date_opt {
    use chrono::NaiveDate;
    use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error as _};

    pub fn serialize<S: Serializer>(date: &Option<NaiveDate>, s: S) -> Result<S::Ok, S::Error> {
        date.map(|d| d.format("%Y-%m-%d").to_string()).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
        match Option::<std::borrow::Cow<str>>::deserialize(d)? {
            None => Ok(None),
            Some(s) if s.trim().is_empty() => Ok(None),
            Some(s) => super::parse_kv_datetime(&s)
                .map(|dt| Some(super::vn_date(&dt)))
                .map_err(D::Error::custom),
        }
    }
}

/// The one source of "now", injectable so that time rules (R-ORD-4, cursors, leases) are testable.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The machine clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock stopped at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedClock(pub DateTime<Utc>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

/// A clock tests can move (leases expiring, budgets refilling).
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock(Mutex::new(start))
    }
    pub fn set(&self, to: DateTime<Utc>) {
        *self.lock() = to;
    }
    pub fn advance(&self, by: Duration) {
        let mut now = self.lock();
        *now += by;
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, DateTime<Utc>> {
        // A poisoned clock still holds a valid instant.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.lock()
    }
}

impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now(&self) -> DateTime<Utc> {
        (**self).now()
    }
}

impl<C: Clock + ?Sized> Clock for Box<C> {
    fn now(&self) -> DateTime<Utc> {
        (**self).now()
    }
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now(&self) -> DateTime<Utc> {
        (**self).now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn every_datetime_shape_gives_the_right_instant() {
        // GIVEN each shape KiotViet or Abaha may send WHEN parsed THEN the UTC instant is exact.
        let table: &[(&str, &str)] = &[
            ("2026-04-09T13:50:26", "2026-04-09T06:50:26Z"),
            ("2026-04-09T13:50:26.", "2026-04-09T06:50:26Z"),
            ("2026-04-09T13:50:26.6", "2026-04-09T06:50:26.6Z"),
            ("2026-04-09T13:50:26.63", "2026-04-09T06:50:26.63Z"),
            ("2026-04-09T13:50:26.637", "2026-04-09T06:50:26.637Z"),
            ("2026-04-09T13:50:26.6370", "2026-04-09T06:50:26.637Z"),
            ("2026-04-09T13:50:26.63701", "2026-04-09T06:50:26.63701Z"),
            ("2026-04-09T13:50:26.637012", "2026-04-09T06:50:26.637012Z"),
            (
                "2026-04-09T13:50:26.6370123",
                "2026-04-09T06:50:26.6370123Z",
            ),
            (
                "2026-04-09T13:50:26.637012345",
                "2026-04-09T06:50:26.637012345Z",
            ),
            ("2026-04-09T13:50:26Z", "2026-04-09T13:50:26Z"),
            (
                "2026-04-09T13:50:26.1234567Z",
                "2026-04-09T13:50:26.1234567Z",
            ),
            (
                "2026-10-07T14:39:09.4969693+07:00",
                "2026-10-07T07:39:09.4969693Z",
            ),
            ("2026-10-07T14:39:09+0700", "2026-10-07T07:39:09Z"),
            ("2026-10-07T14:39:09+07", "2026-10-07T07:39:09Z"),
            ("2026-10-07T02:00:00-05:30", "2026-10-07T07:30:00Z"),
            ("2026-05-29 00:00:00", "2026-05-28T17:00:00Z"),
            ("2026-05-29 23:59:59", "2026-05-29T16:59:59Z"),
            ("2026-05-29t23:59", "2026-05-29T16:59:00Z"),
            ("2026-05-29", "2026-05-28T17:00:00Z"),
            ("  2026-05-29T07:00:00  ", "2026-05-29T00:00:00Z"),
        ];
        for (input, want) in table {
            let got = parse_kv_datetime(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(got.with_timezone(&Utc), utc(want), "{input}");
        }
    }

    #[test]
    fn naive_values_keep_the_vietnam_offset() {
        let got = parse_kv_datetime("2026-04-09T13:50:26.6370000").unwrap();
        assert_eq!(got.offset().local_minus_utc(), VN_OFFSET_SECS);
        assert_eq!(kv_local(&got), "2026-04-09T13:50:26");
    }

    #[test]
    fn malformed_values_are_errors_not_panics() {
        for bad in [
            "",
            "2026",
            "2026-13-01",
            "2026-02-30",
            "2026-02-03X10:00:00",
            "2026-02-03T25:00:00",
            "2026-02-03T10:00:60",
            "2026-02-03T10:00:00.1234567890",
            "2026-02-03T10:00:00+24:00",
            "2026-02-03T10:00:00+07:00junk",
            "2026-02-03T10:00:00 +07:00",
            "２０２６-02-03",
            "2026-02-0é",
            "2026-02-03Té",
            "日本語の文字列",
        ] {
            assert!(parse_kv_datetime(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn errors_cut_long_input_on_a_char_boundary() {
        let long = "é".repeat(500);
        let e = parse_kv_datetime(&long).unwrap_err();
        assert!(e.input.chars().count() <= 81);
    }

    #[test]
    fn kv_local_formats_any_zone_in_vietnam_time() {
        assert_eq!(
            kv_local(&utc("2026-05-01T04:30:00.999Z")),
            "2026-05-01T11:30:00"
        );
        assert_eq!(
            rfc3339_vn(&utc("2026-05-01T04:30:00Z")),
            "2026-05-01T11:30:00+07:00"
        );
        assert_eq!(
            vn_date(&utc("2026-05-01T18:00:00Z")).to_string(),
            "2026-05-02"
        );
    }

    #[test]
    fn serde_helpers_read_kv_shapes_and_write_rfc3339() {
        #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
        struct T {
            #[serde(with = "kv_datetime")]
            at: DateTime<FixedOffset>,
            #[serde(default, with = "kv_datetime_opt")]
            maybe: Option<DateTime<FixedOffset>>,
            #[serde(default, with = "date_opt")]
            day: Option<NaiveDate>,
        }
        let t: T = serde_json::from_str(r#"{"at":"2026-05-01T10:00:00.0000000"}"#).unwrap();
        assert_eq!(t.maybe, None);
        let json = serde_json::to_value(&t).unwrap();
        assert_eq!(json["at"], "2026-05-01T10:00:00+07:00");
        let t: T = serde_json::from_str(
            r#"{"at":"2026-05-01T03:00:00Z","maybe":"","day":"1995-06-01T00:00:00.0000000"}"#,
        )
        .unwrap();
        assert_eq!(t.maybe, None);
        assert_eq!(t.day, NaiveDate::from_ymd_opt(1995, 6, 1));
        assert_eq!(serde_json::to_value(&t).unwrap()["day"], "1995-06-01");
        let t: T = serde_json::from_str(r#"{"at":"2026-05-01","maybe":null,"day":null}"#).unwrap();
        assert_eq!(t.day, None);
        assert!(serde_json::from_str::<T>(r#"{"at":"yesterday"}"#).is_err());
    }

    #[test]
    fn clocks_tell_the_time_they_are_given() {
        let t0 = utc("2026-05-01T00:00:00Z");
        assert_eq!(FixedClock(t0).now(), t0);
        let manual = ManualClock::new(t0);
        manual.advance(Duration::minutes(5));
        assert_eq!(manual.now(), utc("2026-05-01T00:05:00Z"));
        let shared: std::sync::Arc<dyn Clock> = std::sync::Arc::new(FixedClock(t0));
        assert_eq!(shared.now(), t0);
        assert!(SystemClock.now() > t0 - Duration::days(36500));
    }
}
