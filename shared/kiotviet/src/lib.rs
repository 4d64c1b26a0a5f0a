//! KiotViet FnB HTTP client: the one way this service talks to KiotViet — the pulls, the order and
//! customer pushes, and the live connection check all go through [`KiotVietClient`].
//!
//! It owns: the client-credentials token (cached, renewed once on 401, never logged), the
//! `Retailer` and `Authorization` headers, the GET budget ([`GetBudget`]), retries through the one
//! policy of the `retry` crate (and the deadline hand-over), the resumable [`Pager`], and the typed
//! [`KvError`]. The wire types are `mapping::kiotviet`'s; records of list pages stay JSON so that
//! one bad record is skipped and named by the caller, not fatal to the page.

mod auth;
mod budget;
mod client;
mod config;
mod error;
mod list;

pub use auth::{Credentials, DEFAULT_TOKEN_LIFETIME, FNB_SCOPE, RENEW_MARGIN, TokenSlot};
pub use budget::{BudgetExhausted, DEFAULT_GET_BUDGET_PER_HOUR, GetBudget, InProcessBudget};
pub use client::{ApiCalls, KiotVietClient};
pub use config::{
    DEFAULT_API_URL, DEFAULT_FALLBACK_TOKEN_URL, DEFAULT_TOKEN_URL, KiotVietConfig, MAX_PAGE_SIZE,
};
pub use error::KvError;
pub use list::{ListEntity, ListRequest, OrderDirection, Pager, PagerPosition};

/// Re-exported so that callers need no direct dependency for the common types.
pub use mapping::kiotviet::Page;
pub use retry::{Deadline, RetryPolicy};
