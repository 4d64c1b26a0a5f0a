//! The request core (headers, token, budget, retries, error classification) and the single-record
//! reads and the writes built on it. List reads live in `list.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use mapping::kiotviet::{
    Branch, Customer, CustomerWrite, DecodeError, ErrorBody, Invoice, OrderCreate, OrderCreated,
    Product, decode_record,
};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use reqwest::{Method, RequestBuilder};
use retry::{DEADLINE_MARGIN, Deadline, Decision, Outcome};
use secrecy::ExposeSecret;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::auth::{Credentials, TokenSlot};
use crate::budget::GetBudget;
use crate::config::KiotVietConfig;
use crate::error::KvError;
use crate::list::{ListEntity, ListRequest, Pager};

/// A KiotViet FnB client for one shop (one set of credentials). Cheap to clone: clones share the
/// token, the call counters and the budget; each carries its own deadline.
#[derive(Clone)]
pub struct KiotVietClient {
    pub(crate) inner: Arc<Inner>,
    pub(crate) deadline: Deadline,
}

pub(crate) struct Inner {
    pub(crate) http: reqwest::Client,
    pub(crate) cfg: Arc<KiotVietConfig>,
    pub(crate) creds: Credentials,
    pub(crate) budget: Arc<dyn GetBudget>,
    /// The access token; shared with other clients of the same credentials when the caller
    /// passes one slot to all of them ([`KiotVietClient::with_token_slot`]).
    pub(crate) token: Arc<TokenSlot>,
    pub(crate) counts: Counts,
}

#[derive(Default)]
pub(crate) struct Counts {
    pub(crate) gets: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) tokens: AtomicU64,
}

/// HTTP requests made so far (every attempt counts; a request refused by the budget does not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ApiCalls {
    /// GETs to the API: what KiotViet's 5 000/h limit counts.
    pub gets: u64,
    /// POST/PUT/DELETE to the API.
    pub writes: u64,
    /// Requests to the token endpoint.
    pub token_requests: u64,
}

impl std::fmt::Debug for KiotVietClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KiotVietClient")
            .field("api_url", &self.inner.cfg.api_url)
            .field("retailer", &self.inner.creds.retailer)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

/// How a request may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// GET: passes the budget; retried on 429, 5xx, timeouts and connection errors.
    Read,
    /// PUT/DELETE: sending the same request twice has the effect of sending it once, so it is
    /// retried like a read (without the GET budget).
    Idempotent,
    /// POST that creates something: retried only when KiotViet cannot have acted on it — a
    /// connection that was never made, or a 429 (refused unread). A timeout or 5xx may come after
    /// KiotViet created the record; retrying could create a duplicate order, so the caller gets
    /// the error and checks for its own reference first (see the order push).
    Create,
}

/// A request to the API, serialised once before the retry loop.
pub(crate) struct Call {
    pub(crate) method: Method,
    /// Starts with `/`.
    pub(crate) path: String,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) body: Option<Vec<u8>>,
    pub(crate) kind: Kind,
}

impl Call {
    pub(crate) fn get(path: impl Into<String>, query: Vec<(String, String)>) -> Self {
        Call {
            method: Method::GET,
            path: path.into(),
            query,
            body: None,
            kind: Kind::Read,
        }
    }

    fn with_body<B: Serialize + ?Sized>(
        method: Method,
        path: impl Into<String>,
        body: &B,
        kind: Kind,
    ) -> Result<Self, KvError> {
        let path = path.into();
        let body = serde_json::to_vec(body).map_err(|e| KvError::Decode {
            path: format!("{method} {path} (request body)"),
            message: e.to_string(),
        })?;
        Ok(Call {
            method,
            path,
            query: Vec::new(),
            body: Some(body),
            kind,
        })
    }

    /// `GET /products/5`: names the request in decode errors (never the query: it may hold a phone).
    pub(crate) fn endpoint(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// One HTTP answer, body read.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) retry_after: Option<Duration>,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    pub(crate) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// KiotViet's own words when the body has them (see [`error_message`]).
    pub(crate) fn message(&self) -> String {
        error_message(self.status, &self.body)
    }
}

/// Sends and reads the whole body (a body cut off half-way is a failed attempt like a timeout).
pub(crate) async fn exchange(request: RequestBuilder) -> Result<Answer, reqwest::Error> {
    let response = request.send().await?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry::parse_retry_after(v, Utc::now()));
    let body = response.bytes().await?.to_vec();
    Ok(Answer {
        status,
        retry_after,
        body,
    })
}

/// Why an attempt failed.
#[derive(Debug)]
pub(crate) enum Failure {
    Status(Answer),
    Network(reqwest::Error),
}

impl Failure {
    pub(crate) fn outcome(&self) -> Outcome {
        match self {
            Failure::Status(answer) => Outcome::Status(answer.status),
            Failure::Network(error) => outcome_of(error),
        }
    }

    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            Failure::Status(answer) => answer.retry_after,
            Failure::Network(_) => None,
        }
    }

    /// The error for [`Decision::HandOver`]: throttled with a known wait, or out of time.
    pub(crate) fn hand_over(&self) -> KvError {
        match self {
            Failure::Status(Answer {
                status: 429,
                retry_after: Some(wait),
                ..
            }) => KvError::RateLimited {
                retry_after: Some(*wait),
            },
            _ => KvError::Deadline,
        }
    }

    /// The error for [`Decision::GiveUp`]. `may_have_landed`: a POST that creates something, whose
    /// failure does not prove that KiotViet did nothing.
    pub(crate) fn into_error(self, may_have_landed: bool) -> KvError {
        const LANDED: &str =
            " (the request may have reached KiotViet: check before sending it again)";
        match self {
            Failure::Network(error) if error.is_builder() => {
                KvError::Transport(error.without_url())
            }
            Failure::Network(error) => {
                let mut message = describe_transport(&error);
                if may_have_landed && !error.is_connect() {
                    message.push_str(LANDED);
                }
                KvError::Transient {
                    status: None,
                    message,
                }
            }
            Failure::Status(answer) => {
                let status = answer.status;
                let mut message = answer.message();
                let code = error_code(&answer.body);
                let about_retailer = mentions_retailer(&message, code.as_deref());
                match status {
                    401 if about_retailer => KvError::UnknownRetailer { message },
                    401 => KvError::Unauthorized,
                    429 => KvError::RateLimited {
                        retry_after: answer.retry_after,
                    },
                    408 | 500 | 502..=504 | 506..=599 => {
                        if may_have_landed {
                            message.push_str(LANDED);
                        }
                        KvError::Transient {
                            status: Some(status),
                            message,
                        }
                    }
                    _ if about_retailer => KvError::UnknownRetailer { message },
                    404 => KvError::NotFound { message },
                    _ => KvError::Rejected {
                        status,
                        message,
                        code,
                    },
                }
            }
        }
    }
}

/// Timeouts, connections dropped mid-request and bodies cut off all count as [`Outcome::Timeout`]
/// (the request may have arrived); only a connection never made is [`Outcome::Connect`].
pub(crate) fn outcome_of(error: &reqwest::Error) -> Outcome {
    if error.is_connect() {
        Outcome::Connect
    } else {
        Outcome::Timeout
    }
}

/// A network error as a sentence, without the URL (a query may hold a phone number) and with the
/// causes that say what happened ("Connection refused").
pub(crate) fn describe_transport(error: &reqwest::Error) -> String {
    let mut message = if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "could not connect".to_owned()
    } else if error.is_body() || error.is_decode() {
        "the answer was cut off".to_owned()
    } else {
        "the request failed".to_owned()
    };
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        cause = inner.source();
    }
    message
}

/// KiotViet's message from an error body (`responseStatus.message`, `ResponseStatus.Message`,
/// `message`, OAuth `error_description`/`error`, via `mapping`), else a short text excerpt,
/// else the status line.
pub(crate) fn error_message(status: u16, body: &[u8]) -> String {
    if let Ok(value) = serde_json::from_slice::<Value>(body)
        && let Some(message) = ErrorBody::message(&value)
        && !message.trim().is_empty()
    {
        return message.trim().to_owned();
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() || text.starts_with('<') || text.starts_with('{') {
        let reason = reqwest::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        return format!("HTTP {status} {reason}").trim_end().to_owned();
    }
    text.chars().take(300).collect()
}

/// `errorCode` of a ServiceStack error (either casing), or an OAuth `error`.
pub(crate) fn error_code(body: &[u8]) -> Option<String> {
    let value = serde_json::from_slice::<Value>(body).ok()?;
    ErrorBody::error_code(&value)
}

/// An API refusal that is about the `Retailer` header rather than the token or the request.
fn mentions_retailer(message: &str, code: Option<&str>) -> bool {
    let message = message.to_lowercase();
    message.contains("retailer") || code.is_some_and(|c| c.to_lowercase().contains("retailer"))
}

/// Renewals in a row before a 401 is final. Two, not one: calls running side by side share the
/// token, and a token another call's renewal or an expiry replaced a moment after this call
/// renewed would otherwise end this call as "refused" although a fresh token works.
const RENEWALS: u32 = 2;

impl KiotVietClient {
    pub fn new(
        http: reqwest::Client,
        cfg: Arc<KiotVietConfig>,
        creds: Credentials,
        budget: Arc<dyn GetBudget>,
    ) -> Self {
        Self::with_token_slot(http, cfg, creds, budget, Arc::default())
    }

    /// A client whose token lives in `slot`: clients given the same slot (and the same
    /// credentials: the caller keys slots by them) share one token, so a process that serves
    /// many jobs of one shop asks KiotViet for a token once a day, not once per job.
    pub fn with_token_slot(
        http: reqwest::Client,
        cfg: Arc<KiotVietConfig>,
        creds: Credentials,
        budget: Arc<dyn GetBudget>,
        slot: Arc<TokenSlot>,
    ) -> Self {
        KiotVietClient {
            inner: Arc::new(Inner {
                http,
                cfg,
                creds,
                budget,
                token: slot,
                counts: Counts::default(),
            }),
            deadline: Deadline::NONE,
        }
    }

    /// No retry wait and no request starts when it would end past `deadline`; the call answers
    /// [`KvError::Deadline`] instead (the Lambda checkpoints and hands over).
    pub fn with_deadline(mut self, deadline: Option<Instant>) -> Self {
        self.deadline = Deadline::from(deadline);
        self
    }

    pub fn deadline(&self) -> Deadline {
        self.deadline
    }

    pub fn retailer(&self) -> &str {
        &self.inner.creds.retailer
    }

    pub fn config(&self) -> &KiotVietConfig {
        &self.inner.cfg
    }

    /// HTTP requests made to the API so far (GETs and writes; token requests not included).
    pub fn api_calls(&self) -> u64 {
        let counts = self.api_call_counts();
        counts.gets + counts.writes
    }

    pub fn api_call_counts(&self) -> ApiCalls {
        let counts = &self.inner.counts;
        ApiCalls {
            gets: counts.gets.load(Ordering::Relaxed),
            writes: counts.writes.load(Ordering::Relaxed),
            token_requests: counts.tokens.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn decide(
        &self,
        attempt: u32,
        outcome: Outcome,
        retry_after: Option<Duration>,
    ) -> Decision {
        self.inner.cfg.retry.decide(
            attempt,
            outcome,
            retry_after,
            self.deadline.time_left(),
            retry::jitter(),
        )
    }

    /// The configured request timeout, shortened so that an attempt ends before the deadline.
    pub(crate) fn attempt_timeout(&self) -> Duration {
        let timeout = self.inner.cfg.request_timeout;
        match self.deadline.time_left() {
            Some(left) => timeout
                .min(left.saturating_sub(DEADLINE_MARGIN / 2))
                .max(Duration::from_millis(1)),
            None => timeout,
        }
    }

    /// The request loop: deadline, token, budget (GETs), headers, one renewal on 401, retries.
    pub(crate) async fn send(&self, call: &Call) -> Result<Vec<u8>, KvError> {
        let inner = &self.inner;
        let retailer =
            HeaderValue::from_str(&inner.creds.retailer).map_err(|_| KvError::UnknownRetailer {
                message: "the retailer name has characters an HTTP header cannot carry".to_owned(),
            })?;
        let url = format!("{}{}", inner.cfg.api_url, call.path);
        let mut attempt = 0u32;
        // Renewals in a row, each answered by a 401 again (see `RENEWALS`).
        let mut renewals = 0u32;
        loop {
            if self.deadline.is_near() {
                return Err(KvError::Deadline);
            }
            // Token first: a budget unit is spent only when a GET is really about to leave.
            let token = self.token().await?;
            if call.kind == Kind::Read {
                inner.budget.take(&inner.creds.retailer, 1).await?;
            }
            attempt += 1;
            let mut request = inner
                .http
                .request(call.method.clone(), &url)
                .query(&call.query)
                .header("Retailer", retailer.clone())
                .bearer_auth(token.value.expose_secret())
                .header(ACCEPT, "application/json")
                .timeout(self.attempt_timeout());
            if let Some(body) = &call.body {
                request = request
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            let counter = match call.kind {
                Kind::Read => &inner.counts.gets,
                Kind::Idempotent | Kind::Create => &inner.counts.writes,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            let failure = match exchange(request).await {
                Ok(answer) => {
                    tracing::debug!(
                        method = %call.method,
                        path = %call.path,
                        status = answer.status,
                        attempt,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "kiotviet request"
                    );
                    if answer.is_success() {
                        return Ok(answer.body);
                    }
                    // A 401 naming the retailer is about the shop, not the token: one renewal
                    // tells the two apart.
                    let most = if answer.status == 401
                        && mentions_retailer(&answer.message(), error_code(&answer.body).as_deref())
                    {
                        1
                    } else {
                        RENEWALS
                    };
                    if answer.status == 401 && renewals < most {
                        // Expired or revoked token: renew and repeat (KiotViet refused the
                        // request, so repeating a POST cannot duplicate it). Not a retry attempt.
                        renewals += 1;
                        attempt -= 1;
                        self.invalidate_token(token.generation).await;
                        continue;
                    }
                    Failure::Status(answer)
                }
                Err(error) => {
                    tracing::debug!(
                        method = %call.method,
                        path = %call.path,
                        attempt,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        error = %describe_transport(&error),
                        "kiotviet request failed"
                    );
                    if error.is_builder() {
                        return Err(KvError::Transport(error.without_url()));
                    }
                    Failure::Network(error)
                }
            };
            let outcome = failure.outcome();
            // Renewals per expiry are bounded: 401s that outlast them mean the tokens are refused,
            // but any other answer in between (a 5xx, a 429) ends that episode, so a token that
            // expires again during the retries is renewed again (bounded by the attempts).
            if !matches!(outcome, Outcome::Status(401)) {
                renewals = 0;
            }
            let may_retry = match call.kind {
                Kind::Read | Kind::Idempotent => true,
                Kind::Create => matches!(outcome, Outcome::Connect | Outcome::Status(429)),
            };
            let decision = if may_retry {
                self.decide(attempt, outcome, failure.retry_after())
            } else {
                Decision::GiveUp
            };
            match decision {
                Decision::RetryAfter(wait) => {
                    tracing::debug!(
                        method = %call.method,
                        path = %call.path,
                        attempt,
                        wait_ms = wait.as_millis() as u64,
                        "kiotviet request will be retried"
                    );
                    retry::sleep(wait).await;
                }
                Decision::HandOver => return Err(failure.hand_over()),
                Decision::GiveUp => return Err(failure.into_error(call.kind == Kind::Create)),
            }
        }
    }

    /// Sends and decodes the answer as `T`.
    pub(crate) async fn call<T: DeserializeOwned>(&self, call: &Call) -> Result<T, KvError> {
        let body = self.send(call).await?;
        decode(&call.endpoint(), &body)
    }

    /// Sends and decodes a single-record answer: `{"data": T}` or bare `T`.
    async fn call_detail<T: DeserializeOwned>(&self, call: &Call) -> Result<T, KvError> {
        let body = self.send(call).await?;
        decode_detail(&call.endpoint(), &body)
    }

    async fn detail<T: DeserializeOwned>(&self, path: String) -> Result<T, KvError> {
        self.call_detail(&Call::get(path, Vec::new())).await
    }

    // ---- reads -------------------------------------------------------------------------------

    /// Every branch of the shop (all pages). A branch record that cannot be read is skipped and
    /// logged, not fatal.
    pub async fn branches(&self) -> Result<Vec<Branch>, KvError> {
        let mut pager = Pager::new(ListRequest::new(ListEntity::Branches));
        let mut branches = Vec::new();
        while let Some(page) = pager.next(self).await? {
            for (index, record) in page.decode::<Branch>().into_iter().enumerate() {
                match record {
                    Ok(branch) => branches.push(branch),
                    Err(error) => {
                        tracing::warn!(index, error = %error, "skipping a KiotViet branch that cannot be read");
                    }
                }
            }
        }
        Ok(branches)
    }

    /// The live check when a connection is saved (R-CON-3): a token is issued for the client id and
    /// secret (else [`KvError::InvalidCredentials`]), the API accepts the retailer name (else
    /// [`KvError::UnknownRetailer`]), and the shop's branches come back for the branch check.
    pub async fn check_connection(&self) -> Result<Vec<Branch>, KvError> {
        self.token().await?;
        self.branches().await
    }

    pub async fn product(&self, id: i64) -> Result<Product, KvError> {
        self.detail(format!("/products/{id}")).await
    }

    pub async fn customer(&self, id: i64) -> Result<Customer, KvError> {
        self.detail(format!("/customers/{id}")).await
    }

    pub async fn invoice(&self, id: i64) -> Result<Invoice, KvError> {
        self.detail(format!("/invoices/{id}")).await
    }

    /// Customers whose contact number matches `phone` as KiotViet searches it (possibly a partial
    /// match): the caller keeps the exact matches. One page (up to 100) is read; records that
    /// cannot be read are skipped.
    pub async fn find_customers_by_phone(&self, phone: &str) -> Result<Vec<Customer>, KvError> {
        let req = ListRequest::new(ListEntity::Customers).with("contactNumber", phone);
        let page = self.page(&req, 0).await?;
        Ok(page
            .decode::<Customer>()
            .into_iter()
            .filter_map(|record| {
                record
                    .map_err(|error| {
                        tracing::warn!(error = %error, "skipping a KiotViet customer that cannot be read");
                    })
                    .ok()
            })
            .collect())
    }

    /// Orders of `branch_id` modified since `since`, with their delivery block, as raw JSON (all
    /// pages, or until a page reaches orders created after `created_until`), oldest first:
    /// sorted by creation, so an order edited during the read does not move between pages. Used after a crash to look for our own reference before creating an
    /// order again. `GET /orders` is unconfirmed on FnB (reference §5.5): a 404 comes back as
    /// [`KvError::NotFound`].
    pub async fn recent_orders(
        &self,
        since: DateTime<Utc>,
        created_until: Option<DateTime<Utc>>,
        branch_id: i64,
    ) -> Result<Vec<Value>, KvError> {
        let req = ListRequest::new(ListEntity::Orders)
            .modified_since(since)
            .with("includeOrderDelivery", "true")
            .with("orderBy", "createdDate")
            .with("branchIds", branch_id.to_string());
        let mut pager = Pager::new(req);
        let mut orders = Vec::new();
        while let Some(page) = pager.next(self).await? {
            // Oldest first: once a page reaches orders created after `created_until`, the rest
            // are later still (a retry days later reads a few pages, not every order since).
            let past = created_until.is_some_and(|until| {
                page.data.iter().any(|o| {
                    o.get("createdDate")
                        .and_then(Value::as_str)
                        .and_then(|d| mapping::time::parse_kv_datetime(d).ok())
                        .is_some_and(|d| d > until)
                })
            });
            orders.extend(page.data);
            if past {
                break;
            }
        }
        Ok(orders)
    }

    // ---- writes ------------------------------------------------------------------------------

    /// `POST /orders` (PascalCase body).
    ///
    /// Retried only when KiotViet cannot have acted on the request: a connection that was never
    /// made, a 429, or a 401 (after renewing). A timeout or 5xx may come after KiotViet created the
    /// order, so it is not re-sent: the [`KvError::Transient`] says "may have reached KiotViet",
    /// and the order push looks for its own reference ([`Self::recent_orders`]) before trying again.
    pub async fn create_order(&self, order: &OrderCreate) -> Result<OrderCreated, KvError> {
        let call = Call::with_body(Method::POST, "/orders", order, Kind::Create)?;
        self.call_detail(&call).await
    }

    /// `POST /customers`. Retried only where no duplicate can result, like orders.
    pub async fn create_customer(&self, customer: &CustomerWrite) -> Result<Customer, KvError> {
        let call = Call::with_body(Method::POST, "/customers", customer, Kind::Create)?;
        self.call_detail(&call).await
    }

    /// `PUT /customers/{id}` (idempotent: retried like a read).
    pub async fn update_customer(
        &self,
        id: i64,
        customer: &CustomerWrite,
    ) -> Result<Customer, KvError> {
        let call = Call::with_body(
            Method::PUT,
            format!("/customers/{id}"),
            customer,
            Kind::Idempotent,
        )?;
        self.call_detail(&call).await
    }

    /// `POST /webhooks` for one event type (`product.update`, …); KiotViet signs each delivery
    /// with HMAC-SHA256 keyed by `secret`. Returns the webhook id.
    pub async fn register_webhook(
        &self,
        event_type: &str,
        url: &str,
        secret: &str,
    ) -> Result<i64, KvError> {
        let body = json!({ "Webhook": {
            "Type": event_type,
            "Url": url,
            "IsActive": true,
            "Description": "Abaha sync",
            "Secret": secret,
        }});
        let call = Call::with_body(Method::POST, "/webhooks", &body, Kind::Create)?;
        let answer: Value = self.call_detail(&call).await?;
        answer
            .get("id")
            .or_else(|| answer.get("Id"))
            .and_then(|id| id.as_i64().or_else(|| id.as_str()?.trim().parse().ok()))
            .ok_or_else(|| KvError::Decode {
                path: "POST /webhooks id".to_owned(),
                message: "the answer has no webhook id".to_owned(),
            })
    }

    /// `DELETE /webhooks/{id}`; a webhook that is already gone counts as deleted.
    pub async fn delete_webhook(&self, id: i64) -> Result<(), KvError> {
        let call = Call {
            method: Method::DELETE,
            path: format!("/webhooks/{id}"),
            query: Vec::new(),
            body: None,
            kind: Kind::Idempotent,
        };
        match self.send(&call).await {
            Ok(_) | Err(KvError::NotFound { .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }
}

/// Decodes a body as `T`; the error names the endpoint and the JSON path inside the answer.
pub(crate) fn decode<T: DeserializeOwned>(endpoint: &str, body: &[u8]) -> Result<T, KvError> {
    decode_with(endpoint, body, decode_record::<T>)
}

/// Decodes a detail answer, `{"data": T}` or bare `T`.
pub(crate) fn decode_detail<T: DeserializeOwned>(
    endpoint: &str,
    body: &[u8],
) -> Result<T, KvError> {
    decode_with(endpoint, body, mapping::kiotviet::decode_detail::<T>)
}

fn decode_with<T>(
    endpoint: &str,
    body: &[u8],
    read: impl FnOnce(&Value) -> Result<T, DecodeError>,
) -> Result<T, KvError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| KvError::Decode {
        path: format!("{endpoint} $"),
        message: e.to_string(),
    })?;
    read(&value).map_err(|e| KvError::Decode {
        path: format!("{endpoint} {}", e.path),
        message: e.message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Failure {
        Failure::Status(Answer {
            status,
            retry_after: None,
            body: body.as_bytes().to_vec(),
        })
    }

    #[test]
    fn error_bodies_keep_kiotviet_words_and_code() {
        let error = answer(
            400,
            r#"{"responseStatus":{"errorCode":"Validation","message":"Thiết lập \"Sử dụng tính năng giao hàng.\" đang không được bật"}}"#,
        )
        .into_error(false);
        match error {
            KvError::Rejected {
                status,
                message,
                code,
            } => {
                assert_eq!(status, 400);
                assert_eq!(
                    message,
                    "Thiết lập \"Sử dụng tính năng giao hàng.\" đang không được bật"
                );
                assert_eq!(code.as_deref(), Some("Validation"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn statuses_map_to_typed_errors() {
        assert!(matches!(
            answer(401, "").into_error(false),
            KvError::Unauthorized
        ));
        assert!(matches!(
            answer(401, r#"{"message":"Retailer không tồn tại"}"#).into_error(false),
            KvError::UnknownRetailer { .. }
        ));
        assert!(matches!(
            answer(
                400,
                r#"{"ResponseStatus":{"ErrorCode":"RetailerNotFound","Message":"x"}}"#
            )
            .into_error(false),
            KvError::UnknownRetailer { .. }
        ));
        assert!(matches!(
            answer(404, r#"{"message":"Không tìm thấy"}"#).into_error(false),
            KvError::NotFound { .. }
        ));
        assert!(matches!(
            answer(429, "").into_error(false),
            KvError::RateLimited { retry_after: None }
        ));
        assert!(matches!(
            answer(501, "").into_error(false),
            KvError::Rejected { status: 501, .. }
        ));
        match answer(503, "<html>busy</html>").into_error(true) {
            KvError::Transient { status, message } => {
                assert_eq!(status, Some(503));
                assert!(
                    message.starts_with("HTTP 503 Service Unavailable"),
                    "{message}"
                );
                assert!(message.contains("may have reached KiotViet"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hand_over_keeps_a_known_throttle_wait() {
        let throttled = Failure::Status(Answer {
            status: 429,
            retry_after: Some(Duration::from_secs(60)),
            body: Vec::new(),
        });
        assert!(matches!(
            throttled.hand_over(),
            KvError::RateLimited {
                retry_after: Some(_)
            }
        ));
        assert!(matches!(answer(503, "").hand_over(), KvError::Deadline));
    }

    #[test]
    fn plain_text_errors_are_kept_short() {
        let long = "x".repeat(1000);
        assert_eq!(error_message(400, long.as_bytes()).len(), 300);
        assert_eq!(error_message(502, b""), "HTTP 502 Bad Gateway");
    }

    mod fuzz {
        use super::*;
        use mapping::kiotviet::Page;
        use proptest::prelude::*;

        /// Arbitrary JSON, biased towards the keys KiotViet answers carry.
        fn json_value() -> impl Strategy<Value = Value> {
            let key = prop_oneof![
                Just("total".to_owned()),
                Just("pageSize".to_owned()),
                Just("data".to_owned()),
                Just("removedIds".to_owned()),
                Just("removeId".to_owned()),
                Just("removeIds".to_owned()),
                Just("timestamp".to_owned()),
                Just("responseStatus".to_owned()),
                Just("ResponseStatus".to_owned()),
                Just("message".to_owned()),
                Just("Message".to_owned()),
                Just("errorCode".to_owned()),
                Just("errors".to_owned()),
                Just("error".to_owned()),
                Just("error_description".to_owned()),
                Just("id".to_owned()),
                "[a-zA-Z]{0,8}",
            ];
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<f64>().prop_map(Value::from),
                ".{0,12}".prop_map(Value::from),
                Just(Value::from("2026-05-01T10:52:12.5730000")),
                Just(Value::from("2026-10-07T14:39:09.4969693+07:00")),
            ];
            leaf.prop_recursive(4, 48, 6, move |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                    prop::collection::btree_map(key.clone(), inner, 0..6)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            #[test]
            fn error_bodies_of_any_json_never_panic(status in 100u16..600, body in json_value()) {
                let bytes = serde_json::to_vec(&body).expect("serialises");
                let message = error_message(status, &bytes);
                prop_assert!(!message.is_empty());
                let _ = error_code(&bytes);
                let failure = Failure::Status(Answer { status, retry_after: None, body: bytes });
                let _ = failure.hand_over();
                let _ = failure.into_error(true).to_string();
            }

            #[test]
            fn error_bodies_of_any_bytes_never_panic(status in 0u16..1000, body in prop::collection::vec(any::<u8>(), 0..400)) {
                let message = error_message(status, &body);
                prop_assert!(message.chars().count() <= 300 || message.starts_with("HTTP"));
                let _ = Failure::Status(Answer { status, retry_after: None, body }).into_error(false);
            }

            #[test]
            fn page_answers_of_any_json_decode_or_fail_cleanly(body in json_value()) {
                let bytes = serde_json::to_vec(&body).expect("serialises");
                match decode::<Page>("GET /customers", &bytes) {
                    Ok(page) => {
                        let _ = page.decode::<Customer>();
                        let _ = record_id_list(&page);
                    }
                    Err(KvError::Decode { path, .. }) => prop_assert!(path.starts_with("GET /customers")),
                    Err(other) => prop_assert!(false, "unexpected {other:?}"),
                }
                let _ = decode_detail::<Product>("GET /products/1", &bytes);
            }
        }

        fn record_id_list(page: &Page) -> Vec<i64> {
            page.data
                .iter()
                .filter_map(mapping::kiotviet::record_id)
                .collect()
        }
    }
}
