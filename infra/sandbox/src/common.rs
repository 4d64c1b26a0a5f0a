//! Pieces both simulators use: the server harness, fault injection, query-string parsing and a
//! few JSON helpers. Nothing here knows about KiotViet or Abaha.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::oneshot;

/// Faults a simulator injects into its own API routes (never into `/_sandbox/…` admin routes).
///
/// The draw is seeded: with the same `seed` and the same request sequence the same requests fail,
/// so a rate can be asserted in a test. Setting faults restarts the sequence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Answer time of every simulated request (token endpoint included): the answer leaves this
    /// long after the request arrived, the simulator's own work included.
    pub latency_ms: u64,
    /// Share of API requests answered with a 5xx (500, 502 or 503).
    pub p_5xx: f64,
    /// Share of API requests answered with 429 and `Retry-After: retry_after_secs`.
    pub p_429: f64,
    pub retry_after_secs: u64,
    /// KiotViet only: every n-th authenticated API request finds all tokens expired (→ 401).
    pub expire_token_every_n_requests: Option<u64>,
    pub seed: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            latency_ms: 0,
            p_5xx: 0.0,
            p_429: 0.0,
            retry_after_secs: 1,
            expire_token_every_n_requests: None,
            seed: 42,
        }
    }
}

/// What the fault draw decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Injected {
    ServerError(StatusCode),
    TooManyRequests { retry_after_secs: u64 },
}

/// Faults plus the seeded generator that draws them.
pub(crate) struct FaultInjector {
    faults: Faults,
    rng: StdRng,
}

impl FaultInjector {
    pub(crate) fn new(faults: Faults) -> Self {
        let rng = StdRng::seed_from_u64(faults.seed);
        FaultInjector { faults, rng }
    }

    pub(crate) fn faults(&self) -> &Faults {
        &self.faults
    }

    pub(crate) fn latency(&self) -> Duration {
        Duration::from_millis(self.faults.latency_ms)
    }

    /// One draw per request, so the realised rates follow `p_5xx` and `p_429`.
    pub(crate) fn draw(&mut self) -> Option<Injected> {
        if self.faults.p_5xx <= 0.0 && self.faults.p_429 <= 0.0 {
            return None;
        }
        let u: f64 = self.rng.random();
        if u < self.faults.p_5xx {
            let status = match self.rng.random_range(0..3u8) {
                0 => StatusCode::INTERNAL_SERVER_ERROR,
                1 => StatusCode::BAD_GATEWAY,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            Some(Injected::ServerError(status))
        } else if u < self.faults.p_5xx + self.faults.p_429 {
            Some(Injected::TooManyRequests {
                retry_after_secs: self.faults.retry_after_secs,
            })
        } else {
            None
        }
    }
}

/// Request counters keyed by "METHOD /route/{template}".
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RouteCounts {
    pub by_route: BTreeMap<String, u64>,
    pub total: u64,
    pub gets: u64,
}

impl RouteCounts {
    pub(crate) fn record(&mut self, method: &str, route: &str) {
        *self
            .by_route
            .entry(format!("{method} {route}"))
            .or_default() += 1;
        self.total += 1;
        if method == "GET" {
            self.gets += 1;
        }
    }

    /// Requests seen for one "METHOD /route" key (0 when never called).
    pub fn get(&self, key: &str) -> u64 {
        self.by_route.get(key).copied().unwrap_or(0)
    }
}

/// Query string or form body as ordered pairs, looked up case-insensitively (ServiceStack binds
/// parameter names without regard to case).
#[derive(Clone, Debug, Default)]
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub(crate) fn parse(raw: Option<&str>) -> Self {
        Params(raw.map(parse_urlencoded).unwrap_or_default())
    }

    pub(crate) fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        Params(pairs)
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| key_matches(k, name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeated parameter (`status=1&status=3`, `status[]=1`), each also split on commas.
    pub(crate) fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| key_matches(k, name))
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect()
    }
}

fn key_matches(key: &str, name: &str) -> bool {
    let key = key.strip_suffix("[]").unwrap_or(key);
    key.eq_ignore_ascii_case(name)
}

/// `application/x-www-form-urlencoded` decoding (`+` is a space, `%XX` a byte).
pub(crate) fn parse_urlencoded(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match bytes.get(i + 1..i + 3) {
                Some([h, l]) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => {
                    out.push(hex_value(*h) << 4 | hex_value(*l));
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        _ => digit - b'A' + 10,
    }
}

/// Case-insensitive field of a JSON object (bodies may come PascalCase or camelCase).
pub(crate) fn field<'a>(obj: &'a Value, name: &str) -> Option<&'a Value> {
    obj.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .filter(|v| !v.is_null())
}

/// JSON equality where `35000` equals `35000.0`: what a client re-sends after a round trip
/// through floats must still count as the same item.
pub(crate) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// A JSON response with a status.
pub(crate) fn json_response(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// The error shape of the interfaces we own (CONTRACTS.md), also used by the admin routes.
pub(crate) fn api_error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    api_error_with(status, code, message, Value::Object(Default::default()))
}

pub(crate) fn api_error_with(
    status: StatusCode,
    code: &str,
    message: impl Into<String>,
    details: Value,
) -> Response {
    json_response(
        status,
        serde_json::json!({"error": {"code": code, "message": message.into(), "details": details}}),
    )
}

/// An admin/JSON body; an empty body reads as `{}`.
pub(crate) fn admin_body<T: serde::de::DeserializeOwned>(raw: &[u8]) -> Result<T, Response> {
    let raw: &[u8] = if raw.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        raw
    };
    serde_json::from_slice(raw).map_err(|e| {
        api_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            format!("invalid body: {e}"),
        )
    })
}

pub(crate) fn with_retry_after(mut resp: Response, secs: u64) -> Response {
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// A running axum server; dropping the guard stops it.
pub(crate) struct ServerGuard {
    pub(crate) addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for ServerGuard {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Binds 127.0.0.1:`port` (0 = ephemeral) and serves `router` on the current Tokio runtime.
pub(crate) async fn serve(router: Router, port: Option<u16>) -> std::io::Result<ServerGuard> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port.unwrap_or(0))).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, %addr, "sandbox server stopped with an error");
        }
    });
    Ok(ServerGuard {
        addr,
        stop: Some(stop),
    })
}

/// The answer to a request, sent `latency` after the request arrived: the simulated latency is the
/// request's whole answer time, the simulator's own work included (it is not added on top; under a
/// loaded machine it would otherwise count twice against the benchmark's ideal).
pub(crate) async fn answer_after<F>(latency: std::time::Duration, answer: F) -> F::Output
where
    F: std::future::Future,
{
    let due = tokio::time::Instant::now() + latency;
    let out = answer.await;
    tokio::time::sleep_until(due).await;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn latency_is_the_answer_time_the_work_included() {
        // GIVEN a latency of 100 ms
        let latency = Duration::from_millis(100);
        let start = tokio::time::Instant::now();
        // WHEN the work takes 30 ms
        let out = answer_after(latency, async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            7
        })
        .await;
        // THEN the answer comes 100 ms after the request, not 130 ms
        assert_eq!(out, 7);
        assert_eq!(start.elapsed(), latency);
        // AND work slower than the latency is answered when it is done
        let start = tokio::time::Instant::now();
        answer_after(latency, tokio::time::sleep(Duration::from_millis(250))).await;
        assert_eq!(start.elapsed(), Duration::from_millis(250));
    }

    #[test]
    fn urlencoded_pairs_decode_plus_and_percent() {
        let p = parse_urlencoded("a=1&b=x+y&c=%C3%A0%2B&d&e=%zz&f=%4");
        assert_eq!(
            p,
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y".into()),
                ("c".into(), "à+".into()),
                ("d".into(), "".into()),
                ("e".into(), "%zz".into()),
                ("f".into(), "%4".into()),
            ]
        );
    }

    #[test]
    fn params_are_case_insensitive_and_split_lists() {
        let p = Params::parse(Some("PageSize=5&status=1,3&status[]=5"));
        assert_eq!(p.get("pagesize"), Some("5"));
        assert_eq!(p.all("Status"), vec!["1", "3", "5"]);
    }

    #[test]
    fn json_eq_ignores_integer_float_spelling() {
        assert!(json_eq(&json!({"a": [1, 2.0]}), &json!({"a": [1.0, 2]})));
        assert!(!json_eq(&json!({"a": 1}), &json!({"a": 1, "b": null})));
    }

    #[test]
    fn fault_draws_follow_the_seed() {
        let f = Faults {
            p_5xx: 0.5,
            ..Faults::default()
        };
        let a: Vec<_> = {
            let mut i = FaultInjector::new(f.clone());
            (0..50).map(|_| i.draw()).collect()
        };
        let mut i = FaultInjector::new(f);
        let b: Vec<_> = (0..50).map(|_| i.draw()).collect();
        assert_eq!(a, b);
    }
}
