//! The one retry policy of the service: which failures are retried, how long to wait, and when to
//! stop waiting and hand the work over to a continuation instead of sleeping past the Lambda deadline.
//!
//! [`RetryPolicy::decide`] is a pure function of (attempt, outcome, `Retry-After`, time left, jitter)
//! so that it can be held by a table test; the HTTP clients (`kiotviet`, `abaha`) call it in their
//! request loops with real jitter ([`jitter`]) and sleep with [`sleep`].
//!
//! Choices (documented once, here):
//! * Retryable: 408, 429, 500, 502, 503, 504, timeouts and connection errors. 501 (not implemented)
//!   and 505 (version not supported) are answers, not accidents: not retried. Every other 4xx is final.
//! * Backoff is full jitter: `jitter * min(cap, base * 2^(attempt-1))` (AWS architecture blog
//!   "Exponential Backoff And Jitter"; smithy-rs' standard strategy).
//! * A `Retry-After` is a floor, not a replacement: the wait is `max(retry_after, backoff)`. Retrying
//!   earlier than the server asked is certain to fail and spends the GET budget; a longer jittered
//!   backoff is still allowed so that many clients told the same instant do not return together.
//! * A `Retry-After` longer than `cap` is not slept in-process: the answer is [`Decision::HandOver`]
//!   (checkpoint, continue later) — we never hold a Lambda for minutes on a throttled shop.
//! * Never sleep past the deadline: when `wait + DEADLINE_MARGIN >= time_left` the answer is
//!   [`Decision::HandOver`]. Attempts exhausted and non-retryable outcomes are [`Decision::GiveUp`],
//!   and take precedence over handing over (there is nothing left to continue).

use std::time::{Duration, Instant};

mod disposition;
pub use disposition::Disposition;

use chrono::{DateTime, NaiveDateTime, Utc};

/// Room kept before the deadline after a wait: the next attempt still has to be sent and answered,
/// and the caller still has to checkpoint.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(2);

/// What happened to one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The server answered with this (non-success) status.
    Status(u16),
    /// No answer in time (the request may have reached the server).
    Timeout,
    /// The connection could not be made (the request never left).
    Connect,
}

impl Outcome {
    /// Whether the failure is worth another attempt at all (attempts and deadline aside).
    pub fn is_retryable(self) -> bool {
        match self {
            Outcome::Status(status) => is_retryable_status(status),
            Outcome::Timeout | Outcome::Connect => true,
        }
    }
}

/// 408, 429, 500, 502, 503, 504. See the module docs for why 501 and 505 are not.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// The policy's answer after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Sleep this long, then make the next attempt.
    RetryAfter(Duration),
    /// Final failure: not retryable, or attempts exhausted.
    GiveUp,
    /// Retryable, but waiting would pass the deadline (or the server asked for a wait longer than we
    /// block in-process): the caller checkpoints and a continuation goes on later.
    HandOver,
}

/// Retry limits. `max_attempts` counts every attempt, the first one included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    /// 6 attempts, 200 ms base, 20 s cap: the worst case without `Retry-After` waits at most
    /// 0.2 + 0.4 + 0.8 + 1.6 + 3.2 = 6.2 s in total, well inside a Lambda's minutes.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries (useful in tests and for one-shot probes).
    pub fn no_retries() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The un-jittered backoff ceiling after `attempt` attempts: `min(cap, base * 2^(attempt-1))`.
    pub fn backoff_ceiling(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1);
        2u32.checked_pow(exponent)
            .and_then(|factor| self.base.checked_mul(factor))
            .map_or(self.cap, |backoff| backoff.min(self.cap))
    }

    /// Decide what to do after attempt number `attempt` (1-based: the attempts already made) failed
    /// with `outcome`. `retry_after` is the server's `Retry-After` (see [`parse_retry_after`]),
    /// `time_left` the time until the deadline (`None`: no deadline), `jitter` a number in `0..=1`
    /// (clamped; [`jitter`] gives a random one).
    pub fn decide(
        &self,
        attempt: u32,
        outcome: Outcome,
        retry_after: Option<Duration>,
        time_left: Option<Duration>,
        jitter: f64,
    ) -> Decision {
        if !outcome.is_retryable() || attempt >= self.max_attempts {
            return Decision::GiveUp;
        }
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let backoff = self.backoff_ceiling(attempt).mul_f64(jitter);
        let wait = match retry_after {
            Some(asked) if asked > self.cap => return Decision::HandOver,
            Some(asked) => asked.max(backoff),
            None => backoff,
        };
        match time_left {
            Some(left) if wait.saturating_add(DEADLINE_MARGIN) >= left => Decision::HandOver,
            _ => Decision::RetryAfter(wait),
        }
    }
}

/// A random jitter in `0..1` for [`RetryPolicy::decide`].
pub fn jitter() -> f64 {
    rand::random::<f64>()
}

/// Sleep on the tokio timer (the one async helper of this crate).
pub async fn sleep(wait: Duration) {
    tokio::time::sleep(wait).await;
}

/// Parse a `Retry-After` header value: delta-seconds (`"120"`) or an HTTP date
/// (IMF-fixdate `"Wed, 21 Oct 2015 07:28:00 GMT"`, and the obsolete RFC 850 and asctime forms).
/// A date in the past means "now" (`Duration::ZERO`). Anything else is `None`.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        // More digits than a u64 holds is still "a very long time".
        let seconds = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(seconds));
    }
    let at = parse_http_date(value)?;
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

fn parse_http_date(value: &str) -> Option<DateTime<Utc>> {
    if let Ok(at) = DateTime::parse_from_rfc2822(value) {
        return Some(at.with_timezone(&Utc));
    }
    // RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT"; asctime: "Sun Nov  6 08:49:37 1994".
    let naive = value
        .strip_suffix(" GMT")
        .and_then(|v| NaiveDateTime::parse_from_str(v, "%A, %d-%b-%y %H:%M:%S").ok())
        .or_else(|| NaiveDateTime::parse_from_str(value, "%a %b %e %H:%M:%S %Y").ok())?;
    Some(naive.and_utc())
}

/// The point in time after which no new wait may start; `None` means "no deadline" (local runs).
/// A Lambda handler builds it from the invocation deadline and hands it to the clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Deadline(Option<Instant>);

impl Deadline {
    pub const NONE: Deadline = Deadline(None);

    pub fn at(instant: Instant) -> Self {
        Deadline(Some(instant))
    }

    pub fn after(duration: Duration) -> Self {
        Deadline(Instant::now().checked_add(duration))
    }

    pub fn instant(self) -> Option<Instant> {
        self.0
    }

    /// Time until the deadline (zero once it has passed); `None` without a deadline.
    pub fn time_left(self) -> Option<Duration> {
        self.0
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// True when fewer than [`DEADLINE_MARGIN`] remain: too late to start another attempt.
    pub fn is_near(self) -> bool {
        self.time_left().is_some_and(|left| left <= DEADLINE_MARGIN)
    }
}

impl From<Option<Instant>> for Deadline {
    fn from(value: Option<Instant>) -> Self {
        Deadline(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }
    const fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    use Decision::{GiveUp, HandOver, RetryAfter};
    use Outcome::{Connect, Status, Timeout};

    /// GIVEN the default policy (6 attempts, 200 ms base, 20 s cap)
    /// WHEN an attempt fails in each of these ways
    /// THEN the decision is the one in the row.
    #[test]
    fn decision_table_holds_the_retry_policy() {
        let policy = RetryPolicy::default();
        /// attempt, outcome, retry-after, time left, jitter => decision
        type Row = (
            u32,
            Outcome,
            Option<Duration>,
            Option<Duration>,
            f64,
            Decision,
        );
        #[rustfmt::skip]
        let rows: &[Row] = &[
            // attempt, outcome, retry-after, time left, jitter => decision
            // --- retryable statuses, no deadline, full jitter = 1.0 gives the ceiling
            (1, Status(429), None, None, 1.0, RetryAfter(ms(200))),
            (2, Status(429), None, None, 1.0, RetryAfter(ms(400))),
            (3, Status(500), None, None, 1.0, RetryAfter(ms(800))),
            (4, Status(502), None, None, 1.0, RetryAfter(ms(1600))),
            (5, Status(503), None, None, 1.0, RetryAfter(ms(3200))),
            (1, Status(504), None, None, 1.0, RetryAfter(ms(200))),
            (1, Status(408), None, None, 1.0, RetryAfter(ms(200))),
            (1, Timeout,     None, None, 1.0, RetryAfter(ms(200))),
            (1, Connect,     None, None, 1.0, RetryAfter(ms(200))),
            // --- jitter scales the wait: full jitter may retry at once
            (3, Status(500), None, None, 0.5, RetryAfter(ms(400))),
            (3, Status(500), None, None, 0.0, RetryAfter(ms(0))),
            (3, Status(500), None, None, 7.0, RetryAfter(ms(800))),     // clamped to 1
            (3, Status(500), None, None, -1.0, RetryAfter(ms(0))),      // clamped to 0
            (3, Status(500), None, None, f64::NAN, RetryAfter(ms(0))),  // not a number: no jitter
            // --- attempts exhausted
            (6, Status(503), None, None, 1.0, GiveUp),
            (7, Status(503), None, None, 1.0, GiveUp),
            (6, Timeout,     None, None, 1.0, GiveUp),
            (6, Status(429), Some(s(1)), None, 1.0, GiveUp),
            // --- not retryable: final at once
            (1, Status(400), None, None, 1.0, GiveUp),
            (1, Status(401), None, None, 1.0, GiveUp),
            (1, Status(403), None, None, 1.0, GiveUp),
            (1, Status(404), None, None, 1.0, GiveUp),
            (1, Status(409), None, None, 1.0, GiveUp),
            (1, Status(422), None, None, 1.0, GiveUp),
            (1, Status(501), None, None, 1.0, GiveUp),
            (1, Status(505), None, None, 1.0, GiveUp),
            (1, Status(200), None, None, 1.0, GiveUp),
            (1, Status(400), Some(s(1)), Some(s(60)), 1.0, GiveUp),
            // --- Retry-After is a floor under the jittered backoff
            (1, Status(429), Some(s(3)), None, 1.0, RetryAfter(s(3))),
            (1, Status(429), Some(s(3)), None, 0.0, RetryAfter(s(3))),
            (5, Status(429), Some(s(1)), None, 1.0, RetryAfter(ms(3200))),
            (1, Status(503), Some(s(0)), None, 1.0, RetryAfter(ms(200))),
            (1, Status(429), Some(s(20)), None, 0.0, RetryAfter(s(20))),    // == cap: still slept
            // --- Retry-After longer than we block in-process: hand over
            (1, Status(429), Some(s(21)), None, 0.0, HandOver),
            (1, Status(429), Some(s(3600)), Some(s(900)), 0.0, HandOver),
            // --- the deadline: never sleep past it (margin 2 s)
            (1, Status(500), None, Some(s(60)), 1.0, RetryAfter(ms(200))),
            (1, Status(500), None, Some(ms(2201)), 1.0, RetryAfter(ms(200))),
            (1, Status(500), None, Some(ms(2200)), 1.0, HandOver),
            (1, Status(500), None, Some(ms(0)), 0.0, HandOver),
            (1, Status(500), None, Some(s(1)), 0.0, HandOver),
            (5, Status(503), None, Some(s(5)), 1.0, HandOver),
            (5, Status(503), None, Some(s(6)), 1.0, RetryAfter(ms(3200))),
            (1, Status(429), Some(s(10)), Some(s(11)), 0.0, HandOver),
            (1, Status(429), Some(s(10)), Some(s(13)), 0.0, RetryAfter(s(10))),
            (2, Timeout,     None, Some(s(1)), 1.0, HandOver),
            (2, Connect,     None, Some(s(3)), 1.0, RetryAfter(ms(400))),
            // --- exhausted beats hand-over: nothing is left to continue
            (6, Status(500), None, Some(s(0)), 1.0, GiveUp),
        ];
        for (i, &(attempt, outcome, retry_after, time_left, jitter, expected)) in
            rows.iter().enumerate()
        {
            let got = policy.decide(attempt, outcome, retry_after, time_left, jitter);
            assert_eq!(
                got, expected,
                "row {i}: attempt {attempt}, {outcome:?}, retry-after {retry_after:?}, \
                 time left {time_left:?}, jitter {jitter}"
            );
        }
    }

    #[test]
    fn backoff_is_capped_and_never_overflows() {
        let policy = RetryPolicy {
            max_attempts: u32::MAX,
            base: ms(200),
            cap: s(20),
        };
        assert_eq!(policy.backoff_ceiling(0), ms(200));
        assert_eq!(policy.backoff_ceiling(1), ms(200));
        assert_eq!(policy.backoff_ceiling(7), ms(12_800));
        assert_eq!(policy.backoff_ceiling(8), s(20));
        assert_eq!(policy.backoff_ceiling(40), s(20));
        assert_eq!(policy.backoff_ceiling(u32::MAX), s(20));
        assert_eq!(
            policy.decide(1000, Status(503), None, None, 1.0),
            RetryAfter(s(20))
        );
    }

    #[test]
    fn no_retries_policy_gives_up_after_the_first_attempt() {
        let policy = RetryPolicy::no_retries();
        assert_eq!(policy.decide(1, Status(503), None, None, 1.0), GiveUp);
    }

    #[test]
    fn real_jitter_stays_within_the_ceiling() {
        let policy = RetryPolicy::default();
        for attempt in 1..6 {
            for _ in 0..100 {
                match policy.decide(attempt, Status(503), None, None, jitter()) {
                    RetryAfter(wait) => assert!(wait <= policy.backoff_ceiling(attempt)),
                    other => panic!("attempt {attempt}: {other:?}"),
                }
            }
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2015, 10, 21, 7, 27, 0)
            .single()
            .expect("valid")
    }

    #[test]
    fn retry_after_accepts_delta_seconds_and_http_dates() {
        #[rustfmt::skip]
        let rows: &[(&str, Option<Duration>)] = &[
            ("120", Some(s(120))),
            ("  7 ", Some(s(7))),
            ("0", Some(s(0))),
            ("99999999999999999999999", Some(Duration::from_secs(u64::MAX))),
            ("Wed, 21 Oct 2015 07:28:00 GMT", Some(s(60))),        // IMF-fixdate
            ("Wed, 21 Oct 2015 07:28:30 +0000", Some(s(90))),
            ("Wednesday, 21-Oct-15 07:29:00 GMT", Some(s(120))),   // RFC 850
            ("Wed Oct 21 07:30:00 2015", Some(s(180))),            // asctime
            ("Wed, 21 Oct 2015 07:00:00 GMT", Some(s(0))),         // in the past: now
            ("", None),
            ("-5", None),
            ("1.5", None),
            ("soon", None),
            ("Wed, 32 Oct 2015 07:28:00 GMT", None),
        ];
        for &(value, expected) in rows {
            assert_eq!(parse_retry_after(value, now()), expected, "{value:?}");
        }
    }

    #[test]
    fn deadline_reports_time_left() {
        assert_eq!(Deadline::NONE.time_left(), None);
        assert!(!Deadline::NONE.is_near());
        let soon = Deadline::after(s(60));
        let left = soon.time_left().expect("has a deadline");
        assert!(left <= s(60) && left > s(50));
        assert!(!soon.is_near());
        let past = Deadline::at(Instant::now() - s(1));
        assert_eq!(past.time_left(), Some(Duration::ZERO));
        assert!(past.is_near());
        assert_eq!(Deadline::from(None), Deadline::NONE);
    }
}
