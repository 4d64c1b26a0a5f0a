//! Every DynamoDB-backed port on one table.
//!
//! Table: keys `pk` (S) and `sk` (S), billing on demand, TTL on `expires_at` (epoch seconds).
//! DynamoDB deletes expired items late (moto never does), so readers also treat an item whose
//! `expires_at` has passed as absent. The item shape of each port is documented on its module:
//!
//! | port | `pk` | `sk` |
//! |---|---|---|
//! | [`connections`] | `CONNECTIONS` | `{shop}` |
//! | [`cursors`] | `SHOP#{shop}` | `CURSOR#{entity}` (cursor and checkpoint in one item) |
//! | [`leases`] | `SHOP#{shop}` | `LEASE#{scope}` |
//! | [`id_map`] | `SHOP#{shop}` | `MAP#{kind}#KV#{kiotviet_id}` / `MAP#{kind}#AB#{abaha_id}` |
//! | [`idempotency`] | `SHOP#{shop}` | `IDEM#{key}` |
//! | [`runs`] | `SHOP#{shop}` | `RUN#{run_id}` (the greatest id is the latest run) |
//! | [`budget`] | `BUDGET#{retailer}` | `{window start, RFC 3339}` |
//!
//! DynamoDB SDK types stay in this module tree.

pub mod budget;
pub mod connections;
pub mod cursors;
pub mod id_map;
pub mod idempotency;
pub mod leases;
pub mod runs;

use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, SecondsFormat, Utc};
use rand::Rng;

use crate::StoreError;

type Item = HashMap<String, AttributeValue>;

/// The DynamoDB adapter of every store port. Cheap to clone (the client is shared).
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    /// Items per Query page; `None` lets DynamoDB fill 1 MB pages. Small only in tests of paging.
    page_limit: Option<i32>,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table.into(),
            page_limit: None,
        }
    }

    pub fn from_conf(config: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self::new(Client::new(config), table)
    }

    /// Queries in pages of `items` (to exercise paging in tests).
    pub fn with_page_limit(mut self, items: i32) -> Self {
        self.page_limit = Some(items);
        self
    }

    pub fn table(&self) -> &str {
        &self.table
    }
}

fn shop_pk(shop: &str) -> String {
    format!("SHOP#{shop}")
}

fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(pk.into())),
        ("sk".to_owned(), AttributeValue::S(sk.into())),
    ])
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl Display) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// A timestamp as stored for people: RFC 3339 UTC with as many fraction digits as it has.
pub(crate) fn time_text(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A timestamp as stored for comparisons in condition expressions: nanoseconds since the epoch.
/// (Defined until the year 2262; later times saturate, which keeps comparisons monotonic.)
fn time_ns(at: DateTime<Utc>) -> i64 {
    at.timestamp_nanos_opt().unwrap_or(if at.timestamp() < 0 {
        i64::MIN
    } else {
        i64::MAX
    })
}

fn time_from_ns(ns: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(ns)
}

fn get_s<'a>(item: &'a Item, name: &str, what: &str) -> Result<&'a str, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        _ => Err(StoreError::malformed(
            what,
            format!("attribute `{name}` is not a string"),
        )),
    }
}

fn get_n<T: FromStr>(item: &Item, name: &str, what: &str) -> Result<T, StoreError> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().map_err(|_| {
            StoreError::malformed(
                what,
                format!("attribute `{name}` is not a fitting number: {v}"),
            )
        }),
        _ => Err(StoreError::malformed(
            what,
            format!("attribute `{name}` is not a number"),
        )),
    }
}

/// Whether the item's TTL has passed at `now` (then it counts as absent).
fn is_expired(item: &Item, now: DateTime<Utc>) -> bool {
    match item.get("expires_at") {
        Some(AttributeValue::N(v)) => v.parse::<i64>().is_ok_and(|at| at <= now.timestamp()),
        _ => false,
    }
}

fn to_av<T: serde::Serialize + ?Sized>(
    value: &T,
    what: &str,
) -> Result<AttributeValue, StoreError> {
    serde_dynamo::to_attribute_value(value).map_err(|e| StoreError::malformed(what, e))
}

fn from_av<T: serde::de::DeserializeOwned>(
    value: AttributeValue,
    what: &str,
) -> Result<T, StoreError> {
    serde_dynamo::from_attribute_value(value).map_err(|e| StoreError::malformed(what, e))
}

/// How often a batch call is repeated for its unprocessed keys or items before giving up.
const BATCH_ATTEMPTS: u32 = 8;

/// Full-jitter backoff between batch repeats (unprocessed keys/items mean throttling; the SDK's
/// own retries do not cover them): 0..min(2 s, 50 ms · 2^attempt).
async fn batch_backoff(attempt: u32) {
    let cap_ms = 50u64.saturating_mul(1 << attempt.min(10)).min(2_000);
    let wait_ms = rand::rng().random_range(0..=cap_ms);
    tokio::time::sleep(Duration::from_millis(wait_ms)).await;
}

/// Expression attribute names for `#name` placeholders; every non-key name goes through one,
/// because many of ours (`state`, `status`, `hash`, `until`) are DynamoDB reserved words.
fn names<const N: usize>(pairs: [(&str, &str); N]) -> HashMap<String, String> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn values<const N: usize>(pairs: [(&str, AttributeValue); N]) -> HashMap<String, AttributeValue> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// A lost condition is an answer, not an error: these split a failed write into "condition
/// failed, here is the old item if the service returned it" (`Ok`) and every other failure (`Err`).
macro_rules! condition_failure {
    ($fn_name:ident, $error:ty, $variant:path) => {
        fn $fn_name(
            op: &'static str,
            err: aws_sdk_dynamodb::error::SdkError<
                $error,
                aws_sdk_dynamodb::config::http::HttpResponse,
            >,
        ) -> Result<Option<Item>, StoreError> {
            match err.as_service_error() {
                Some($variant(failure)) => Ok(failure.item().cloned()),
                _ => Err(StoreError::aws(op, err)),
            }
        }
    };
}

condition_failure!(
    put_condition_failed,
    aws_sdk_dynamodb::operation::put_item::PutItemError,
    aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException
);
condition_failure!(
    update_condition_failed,
    aws_sdk_dynamodb::operation::update_item::UpdateItemError,
    aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException
);
condition_failure!(
    delete_condition_failed,
    aws_sdk_dynamodb::operation::delete_item::DeleteItemError,
    aws_sdk_dynamodb::operation::delete_item::DeleteItemError::ConditionalCheckFailedException
);
