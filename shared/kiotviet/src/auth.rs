//! Client-credentials tokens (reference §2): one token per client, cached until shortly before it
//! expires, renewed once when the API answers 401. Neither the secret nor the token is ever logged
//! or put into an error.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mapping::kiotviet::TokenResponse;
use reqwest::header::ACCEPT;
use retry::Decision;
use secrecy::{ExposeSecret, SecretString};

use crate::client::{Failure, KiotVietClient, describe_transport, exchange};
use crate::error::KvError;

/// The FnB scope (retail uses `PublicApi.Access`, which FnB shops do not grant).
pub const FNB_SCOPE: &str = "PublicApi.Access.FNB";
/// Renew this long before `expires_in` runs out.
pub const RENEW_MARGIN: Duration = Duration::from_secs(5 * 60);
/// Assumed lifetime when the token answer has no `expires_in` (KiotViet documents 24 h).
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// What a connection needs to talk to one KiotViet shop. `Debug` never shows the secret.
#[derive(Clone)]
pub struct Credentials {
    /// The shop's login name ("Tên kết nối"), sent as the `Retailer` header.
    pub retailer: String,
    pub client_id: String,
    /// "Mã bảo mật".
    pub client_secret: SecretString,
}

impl Credentials {
    pub fn new(
        retailer: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> Self {
        Credentials {
            retailer: retailer.into(),
            client_id: client_id.into(),
            client_secret: SecretString::from(client_secret.into()),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("retailer", &self.retailer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[REDACTED]")
            .finish()
    }
}

/// Where a client keeps its access token. One per client by default; share one `Arc<TokenSlot>`
/// between clients of the same credentials to share the token (see
/// [`KiotVietClient::with_token_slot`]).
#[derive(Default)]
pub struct TokenSlot {
    /// An async mutex: the first caller that finds no valid token fetches it while the others
    /// wait, so a burst of requests makes one token call.
    token: tokio::sync::Mutex<Option<CachedToken>>,
    generation: AtomicU64,
    /// The fallback token host answered last time: renew there first.
    prefer_fallback: AtomicBool,
}

impl fmt::Debug for TokenSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSlot")
            .field("generation", &self.generation.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// A cached access token. `generation` tells a 401 on an old token from one on the current token,
/// so that many requests failing together renew it once, not once each.
#[derive(Clone)]
pub(crate) struct CachedToken {
    pub(crate) value: SecretString,
    pub(crate) generation: u64,
    renew_at: Instant,
}

impl fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedToken")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// When to renew a token that lives `lifetime`: [`RENEW_MARGIN`] early, but never earlier than
/// half-way (a short-lived test token must still be reused).
fn renew_after(lifetime: Duration) -> Duration {
    lifetime - RENEW_MARGIN.min(lifetime / 2)
}

impl KiotVietClient {
    /// The current token, fetched (once, whoever else is waiting) when missing or due.
    pub(crate) async fn token(&self) -> Result<CachedToken, KvError> {
        let mut slot = self.inner.token.token.lock().await;
        if let Some(token) = slot.as_ref()
            && Instant::now() < token.renew_at
        {
            return Ok(token.clone());
        }
        let token = self.fetch_token().await?;
        *slot = Some(token.clone());
        Ok(token)
    }

    /// Makes sure a token is at hand, so a write that follows spends its time on the write
    /// itself (the order push fetches it before recording that it is about to send).
    pub async fn ensure_token(&self) -> Result<(), KvError> {
        self.token().await.map(|_| ())
    }

    /// Forget `generation` after the API refused it (a newer token is kept).
    pub(crate) async fn invalidate_token(&self, generation: u64) {
        let mut slot = self.inner.token.token.lock().await;
        if slot.as_ref().is_some_and(|t| t.generation == generation) {
            *slot = None;
        }
    }

    /// Asks the token host; on 400/401 asks the fallback host, and remembers which one answered so
    /// that renewals go straight there.
    async fn fetch_token(&self) -> Result<CachedToken, KvError> {
        let cfg = &self.inner.cfg;
        let mut urls = vec![cfg.token_url.as_str()];
        if let Some(fallback) = cfg.fallback_token_url.as_deref() {
            urls.push(fallback);
        }
        if self.inner.token.prefer_fallback.load(Ordering::Relaxed) {
            urls.reverse();
        }
        let mut refused = None;
        for url in urls {
            match self.request_token(url).await {
                Ok(token) => {
                    let is_fallback = url != cfg.token_url;
                    self.inner
                        .token
                        .prefer_fallback
                        .store(is_fallback, Ordering::Relaxed);
                    return Ok(token);
                }
                Err(error @ KvError::InvalidCredentials { .. }) => {
                    tracing::debug!(retailer = %self.inner.creds.retailer, "token host refused the credentials");
                    refused = Some(error);
                }
                // The first host refused and the second is unreachable: we do not know that the
                // credentials are wrong, so say what we know (KiotViet unavailable).
                Err(error) => return Err(error),
            }
        }
        Err(refused.unwrap_or_else(|| KvError::InvalidCredentials {
            message: "no token URL configured".to_owned(),
        }))
    }

    /// One token host, with the retry policy (a duplicate token request is harmless, so timeouts
    /// and 5xx are retried like reads).
    async fn request_token(&self, url: &str) -> Result<CachedToken, KvError> {
        let inner = &self.inner;
        let creds = &inner.creds;
        // The scope goes as both `scopes` (KiotViet's doc) and `scope` (RFC 6749, what newer FnB
        // clients send): the reference found both accepted by the server and no evidence that the
        // extra key is refused, so sending both works with either token host.
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", creds.client_id.as_str()),
            ("client_secret", creds.client_secret.expose_secret()),
            ("scopes", FNB_SCOPE),
            ("scope", FNB_SCOPE),
        ];
        let mut attempt = 0u32;
        loop {
            if self.deadline.is_near() {
                return Err(KvError::Deadline);
            }
            attempt += 1;
            inner.counts.tokens.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            let request = inner
                .http
                .post(url)
                .header(ACCEPT, "application/json")
                .form(&form)
                .timeout(self.attempt_timeout());
            let failure = match exchange(request).await {
                Ok(answer) => {
                    tracing::debug!(
                        method = "POST",
                        path = "token",
                        status = answer.status,
                        attempt,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "kiotviet token request"
                    );
                    if answer.is_success() {
                        return self.read_token(&answer.body);
                    }
                    if matches!(answer.status, 400 | 401 | 403) {
                        return Err(KvError::InvalidCredentials {
                            message: answer.message(),
                        });
                    }
                    Failure::Status(answer)
                }
                Err(error) => {
                    tracing::debug!(method = "POST", path = "token", attempt, error = %describe_transport(&error), "kiotviet token request failed");
                    Failure::Network(error)
                }
            };
            match self.decide(attempt, failure.outcome(), failure.retry_after()) {
                Decision::RetryAfter(wait) => retry::sleep(wait).await,
                Decision::HandOver => return Err(failure.hand_over()),
                Decision::GiveUp => return Err(failure.into_error(false)),
            }
        }
    }

    fn read_token(&self, body: &[u8]) -> Result<CachedToken, KvError> {
        let decode_error = |message: String| KvError::Decode {
            path: "token".to_owned(),
            message,
        };
        let answer: TokenResponse =
            serde_json::from_slice(body).map_err(|e| decode_error(e.to_string()))?;
        if answer.access_token.trim().is_empty() {
            return Err(decode_error(
                "the token answer has no access_token".to_owned(),
            ));
        }
        let lifetime = answer
            .expires_in
            .and_then(|secs| u64::try_from(secs).ok())
            .filter(|secs| *secs > 0)
            .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
        let generation = self.inner.token.generation.fetch_add(1, Ordering::Relaxed) + 1;
        Ok(CachedToken {
            value: SecretString::from(answer.access_token),
            generation,
            renew_at: Instant::now() + renew_after(lifetime),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let creds = Credentials::new("testfnb", "client-1", "s3cr3t-value");
        let shown = format!("{creds:?}");
        assert!(shown.contains("testfnb") && shown.contains("client-1"));
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }

    #[test]
    fn tokens_renew_five_minutes_early_but_not_before_half_life() {
        assert_eq!(
            renew_after(Duration::from_secs(86_400)),
            Duration::from_secs(86_100)
        );
        assert_eq!(
            renew_after(Duration::from_secs(60)),
            Duration::from_secs(30)
        );
        assert_eq!(renew_after(Duration::ZERO), Duration::ZERO);
    }
}
