//! Client of the Abaha Sync API (CONTRACTS.md §2): batched, idempotent upserts keyed by KiotViet id.
//!
//! The API is ours to define and Abaha's backend implements it. Every call is a batch of at most
//! 100 items; the answer carries one result per item, in item order. Transient failures (429, 5xx,
//! timeouts) are retried with the project's one retry policy; upserts are keyed and idempotent, so a
//! retried batch can never double a record.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mapping::abaha::{ItemResult, Upsert, UpsertAnswer};
use retry::{Decision, Disposition, Outcome, RetryPolicy};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

/// The most items one upsert call may carry (CONTRACTS.md §2).
pub const MAX_BATCH: usize = 100;

/// The four collections the service writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collection {
    Categories,
    Products,
    Customers,
    Orders,
}

impl Collection {
    pub fn as_str(self) -> &'static str {
        match self {
            Collection::Categories => "categories",
            Collection::Products => "products",
            Collection::Customers => "customers",
            Collection::Orders => "orders",
        }
    }
}

/// Where the Abaha Sync API lives and how to call it.
#[derive(Clone)]
pub struct AbahaConfig {
    pub base_url: String,
    pub token: SecretString,
    pub retry: RetryPolicy,
    pub request_timeout: Duration,
}

impl std::fmt::Debug for AbahaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AbahaConfig")
            .field("base_url", &self.base_url)
            .field("token", &"[redacted]")
            .finish()
    }
}

impl AbahaConfig {
    pub fn new(base_url: impl Into<String>, token: SecretString) -> Self {
        AbahaConfig {
            base_url: base_url.into().trim_end_matches('/').to_string(),
            token,
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(20),
        }
    }
}

/// Why an upsert failed as a whole. Per-item failures are not errors: they come back in
/// [`ItemResult::error`].
#[derive(Debug, thiserror::Error)]
pub enum AbahaError {
    #[error("the Abaha Sync API refused our token (check ABAHA_API_TOKEN)")]
    Unauthorized,
    #[error("Abaha does not know shop {shop}")]
    UnknownShop { shop: String },
    #[error("Abaha refused the whole batch ({code}): {message}")]
    Rejected {
        status: u16,
        code: String,
        message: String,
    },
    #[error("Abaha is rate limiting us")]
    RateLimited { retry_after: Option<Duration> },
    #[error("Abaha is temporarily unavailable (status {status:?}): {message}")]
    Transient {
        status: Option<u16>,
        message: String,
    },
    #[error("stopped before the Lambda deadline; the run continues in a new invocation")]
    Deadline,
    #[error("could not reach the Abaha Sync API")]
    Transport(#[source] reqwest::Error),
    #[error("unexpected answer from the Abaha Sync API: {message}")]
    Decode { message: String },
}

impl AbahaError {
    /// What a job does with this error (`retry::Disposition`), decided here once.
    pub fn disposition(&self) -> Disposition {
        match self {
            AbahaError::RateLimited { retry_after } => Disposition::Throttled {
                retry_after: *retry_after,
            },
            AbahaError::Transient { .. } | AbahaError::Transport(_) => Disposition::Transient,
            // Stopped before the Lambda deadline: a continuation goes on at once.
            AbahaError::Deadline => Disposition::HandOver { resume_at: None },
            AbahaError::Unauthorized
            | AbahaError::UnknownShop { .. }
            | AbahaError::Rejected { .. }
            | AbahaError::Decode { .. } => Disposition::Permanent,
        }
    }

    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        self.disposition().is_retryable()
    }
}

/// What one logical upsert (possibly several HTTP batches) produced.
#[derive(Debug, Default)]
pub struct UpsertOutcome {
    /// One result per item sent, in item order.
    pub results: Vec<ItemResult>,
    /// HTTP requests spent, retries included (for the run report).
    pub http_calls: u64,
}

/// The Abaha Sync API client. Cheap to clone; built once per Lambda container.
#[derive(Clone)]
pub struct AbahaClient {
    http: reqwest::Client,
    cfg: Arc<AbahaConfig>,
}

impl AbahaClient {
    pub fn new(http: reqwest::Client, cfg: AbahaConfig) -> Self {
        AbahaClient {
            http,
            cfg: Arc::new(cfg),
        }
    }

    /// Upserts `items` into `collection` of `shop`, in batches of [`MAX_BATCH`]. Stops at the first
    /// batch that fails as a whole; results of earlier batches are lost to the caller in that case,
    /// which is harmless because upserts are idempotent and the caller re-sends from its checkpoint.
    pub async fn upsert<T: Serialize>(
        &self,
        shop: &str,
        collection: Collection,
        items: &[T],
        deadline: Option<Instant>,
    ) -> Result<UpsertOutcome, AbahaError> {
        let mut outcome = UpsertOutcome::default();
        for chunk in items.chunks(MAX_BATCH) {
            let (results, calls) = self.upsert_batch(shop, collection, chunk, deadline).await?;
            outcome.http_calls += calls;
            outcome.results.extend(results);
        }
        Ok(outcome)
    }

    async fn upsert_batch<T: Serialize>(
        &self,
        shop: &str,
        collection: Collection,
        items: &[T],
        deadline: Option<Instant>,
    ) -> Result<(Vec<ItemResult>, u64), AbahaError> {
        let url = format!(
            "{}/v1/shops/{}/{}:upsert",
            self.cfg.base_url,
            encode_segment(shop),
            collection.as_str()
        );
        let body = Upsert {
            items: items.iter().collect::<Vec<_>>(),
        };
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let sent = self
                .http
                .post(&url)
                .bearer_auth(self.cfg.token.expose_secret())
                .timeout(self.cfg.request_timeout)
                .json(&body)
                .send()
                .await;
            let (outcome, retry_after, error) = match sent {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    if resp.status().is_success() {
                        let answer: UpsertAnswer =
                            resp.json().await.map_err(|e| AbahaError::Decode {
                                message: e.to_string(),
                            })?;
                        if answer.results.len() != items.len() {
                            return Err(AbahaError::Decode {
                                message: format!(
                                    "{} results for {} items",
                                    answer.results.len(),
                                    items.len()
                                ),
                            });
                        }
                        tracing::debug!(
                            shop,
                            collection = collection.as_str(),
                            items = items.len(),
                            attempt,
                            "abaha upsert accepted"
                        );
                        return Ok((answer.results, u64::from(attempt)));
                    }
                    let retry_after = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| retry::parse_retry_after(v, chrono::Utc::now()));
                    let text = resp.text().await.unwrap_or_default();
                    let err = classify(status, &text, shop, retry_after);
                    (Outcome::Status(status), retry_after, err)
                }
                Err(e) => {
                    let outcome = if e.is_timeout() {
                        Outcome::Timeout
                    } else {
                        Outcome::Connect
                    };
                    (outcome, None, AbahaError::Transport(e))
                }
            };
            let time_left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            match self.cfg.retry.decide(
                attempt,
                outcome,
                retry_after,
                time_left,
                rand::random::<f64>(),
            ) {
                Decision::RetryAfter(wait) => {
                    tracing::warn!(shop, collection = collection.as_str(), attempt, wait_ms = wait.as_millis() as u64, error = %error, "abaha upsert retried");
                    tokio::time::sleep(wait).await;
                }
                Decision::HandOver => return Err(AbahaError::Deadline),
                Decision::GiveUp => return Err(error),
            }
        }
    }
}

/// Turns a non-success answer into a typed error, reading the documented error shape.
fn classify(status: u16, body: &str, shop: &str, retry_after: Option<Duration>) -> AbahaError {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get("error"))
            .and_then(|e| e.get(name))
            .and_then(|m| m.as_str())
            .map(str::to_string)
    };
    let message = field("message").unwrap_or_else(|| truncate(body, 300));
    match status {
        401 | 403 => AbahaError::Unauthorized,
        404 => AbahaError::UnknownShop {
            shop: shop.to_string(),
        },
        429 => AbahaError::RateLimited { retry_after },
        500..=599 => AbahaError::Transient {
            status: Some(status),
            message,
        },
        _ => AbahaError::Rejected {
            status,
            code: field("code").unwrap_or_else(|| "rejected".to_string()),
            message,
        },
    }
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Shop ids are ours and simple, but a path segment must never be able to change the route.
fn encode_segment(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c.to_string()
            } else {
                let mut buf = [0u8; 4];
                c.encode_utf8(&mut buf)
                    .bytes()
                    .map(|b| format!("%{b:02X}"))
                    .collect()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_says_its_disposition() {
        let wait = Some(Duration::from_secs(5));
        let rows = [
            (
                AbahaError::RateLimited { retry_after: wait },
                Disposition::Throttled { retry_after: wait },
            ),
            (
                AbahaError::Transient {
                    status: Some(503),
                    message: "down".into(),
                },
                Disposition::Transient,
            ),
            (
                AbahaError::Deadline,
                Disposition::HandOver { resume_at: None },
            ),
            (AbahaError::Unauthorized, Disposition::Permanent),
            (
                AbahaError::UnknownShop { shop: "s".into() },
                Disposition::Permanent,
            ),
            (
                AbahaError::Rejected {
                    status: 422,
                    code: "c".into(),
                    message: "m".into(),
                },
                Disposition::Permanent,
            ),
            (
                AbahaError::Decode {
                    message: "m".into(),
                },
                Disposition::Permanent,
            ),
        ];
        for (error, disposition) in rows {
            assert_eq!(error.disposition(), disposition, "{error}");
            assert_eq!(error.is_retryable(), disposition.is_retryable(), "{error}");
        }
    }

    #[test]
    fn error_shape_is_read_and_statuses_are_typed() {
        let body = r#"{"error":{"code":"validation_failed","message":"items[0].name is required","details":{}}}"#;
        match classify(422, body, "s1", None) {
            AbahaError::Rejected { code, message, .. } => {
                assert_eq!(code, "validation_failed");
                assert_eq!(message, "items[0].name is required");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            classify(401, "", "s1", None),
            AbahaError::Unauthorized
        ));
        assert!(matches!(
            classify(404, "", "s1", None),
            AbahaError::UnknownShop { .. }
        ));
        assert!(classify(503, "down", "s1", None).is_retryable());
        assert!(classify(429, "", "s1", Some(Duration::from_secs(2))).is_retryable());
        assert!(!classify(422, "{}", "s1", None).is_retryable());
    }

    #[test]
    fn shop_ids_cannot_change_the_route() {
        assert_eq!(encode_segment("shop-1"), "shop-1");
        assert_eq!(encode_segment("../x"), "..%2Fx");
        assert_eq!(encode_segment("a b"), "a%20b");
    }
}
