//! List reads: one request per page (`pageSize`, `currentItem`), the resumable [`Pager`] the sync
//! engine checkpoints between pages, and the lazy page streams built on it.
//!
//! Paging rule (reference §4): `currentItem += data.len()` until a page comes back empty or
//! `currentItem >= total`. Guards: a page that repeats the previous page's ids stops the read with
//! an error (a server ignoring `currentItem` would otherwise loop forever); a `total` that moves
//! between pages (records added or removed meanwhile) is followed and recorded
//! ([`Pager::total_moved`]) — offset paging may then repeat or skip a record, which the incremental
//! overlap window and keyed upserts absorb.

use chrono::{DateTime, Utc};
use futures::stream::{self, Stream, StreamExt};
use mapping::kiotviet::{Page, record_id};
use mapping::time::kv_local;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::client::{Call, KiotVietClient};
use crate::error::KvError;

/// What a list read reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListEntity {
    Branches,
    Categories,
    Products,
    Customers,
    Invoices,
    /// `GET /orders`: unconfirmed on FnB (reference §5.5).
    Orders,
}

impl ListEntity {
    pub fn path(self) -> &'static str {
        match self {
            ListEntity::Branches => "/branches",
            ListEntity::Categories => "/categories",
            ListEntity::Products => "/products",
            ListEntity::Customers => "/customers",
            ListEntity::Invoices => "/invoices",
            ListEntity::Orders => "/orders",
        }
    }

    /// Parameters this entity always sends.
    fn fixed_params(self) -> &'static [(&'static str, &'static str)] {
        match self {
            // Flat list filtered by lastModifiedFrom; `true` returns a tree and ignores the filter.
            // (Sic: KiotViet's parameter is spelled "hierachical".)
            ListEntity::Categories => &[("hierachicalData", "false")],
            // Stock of each branch (R-PRD-5). Never `includePricebook` (R-PRD-2, R-NOT-3).
            ListEntity::Products => &[("includeInventory", "true")],
            // Payments are part of the Abaha order (CONTRACTS §2 orders:upsert).
            ListEntity::Invoices => &[("includePayment", "true")],
            ListEntity::Branches | ListEntity::Customers | ListEntity::Orders => &[],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderDirection {
    Asc,
    Desc,
}

impl OrderDirection {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderDirection::Asc => "Asc",
            OrderDirection::Desc => "Desc",
        }
    }
}

/// Parameters no request may carry, whoever asks: price books are never synced (R-PRD-2).
const FORBIDDEN_PARAMS: &[&str] = &["includePricebook"];
/// Parameters the pager owns.
const PAGER_PARAMS: &[&str] = &["pageSize", "currentItem"];

/// One list read, independent of the page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListRequest {
    pub entity: ListEntity,
    /// Sent as Vietnam local time; also asks for removed ids (`includeRemoveIds=true`).
    pub last_modified_from: Option<DateTime<Utc>>,
    pub order_by: Option<String>,
    pub order_direction: Option<OrderDirection>,
    /// Further parameters (`contactNumber`, `fromPurchaseDate`, `branchIds`, …). A key the entity
    /// already sends is replaced; `pageSize`/`currentItem` and `includePricebook` are dropped.
    pub extra: Vec<(String, String)>,
}

impl ListRequest {
    pub fn new(entity: ListEntity) -> Self {
        ListRequest {
            entity,
            last_modified_from: None,
            order_by: None,
            order_direction: None,
            extra: Vec::new(),
        }
    }

    pub fn modified_since(mut self, from: DateTime<Utc>) -> Self {
        self.last_modified_from = Some(from);
        self
    }

    pub fn order_by(mut self, field: impl Into<String>, direction: OrderDirection) -> Self {
        self.order_by = Some(field.into());
        self.order_direction = Some(direction);
        self
    }

    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra.push((key.into(), value.into()));
        self
    }

    /// The query string of the page at `current_item`.
    pub fn query(&self, current_item: i64, page_size: u32) -> Vec<(String, String)> {
        let mut query: Vec<(String, String)> = vec![
            ("pageSize".to_owned(), page_size.to_string()),
            ("currentItem".to_owned(), current_item.max(0).to_string()),
        ];
        let mut set = |key: &str, value: String| {
            if let Some(slot) = query.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case(key)) {
                slot.1 = value;
            } else {
                query.push((key.to_owned(), value));
            }
        };
        for (key, value) in self.entity.fixed_params() {
            set(key, (*value).to_owned());
        }
        if let Some(from) = self.last_modified_from {
            set("lastModifiedFrom", kv_local(&from));
            set("includeRemoveIds", "true".to_owned());
        }
        if let Some(order_by) = &self.order_by {
            set("orderBy", order_by.clone());
        }
        if let Some(direction) = self.order_direction {
            set("orderDirection", direction.as_str().to_owned());
        }
        for (key, value) in &self.extra {
            let is = |names: &[&str]| names.iter().any(|n| n.eq_ignore_ascii_case(key));
            if is(FORBIDDEN_PARAMS) {
                tracing::warn!(param = %key, "dropping a parameter this client never sends");
                continue;
            }
            if is(PAGER_PARAMS) {
                continue;
            }
            set(key, value.clone());
        }
        query
    }
}

/// Where a [`Pager`] stands; stored in a checkpoint and given back to [`Pager::resume`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PagerPosition {
    pub current_item: i64,
    /// The last `total` KiotViet reported.
    pub total: Option<i64>,
    pub done: bool,
}

/// A resumable walk through the pages of one [`ListRequest`].
#[derive(Debug, Clone)]
pub struct Pager {
    req: ListRequest,
    current_item: i64,
    total: Option<i64>,
    total_moved: bool,
    previous_ids: Option<Vec<i64>>,
    done: bool,
    pages: u64,
}

impl Pager {
    pub fn new(req: ListRequest) -> Self {
        Self::resume(req, PagerPosition::default())
    }

    /// Continue a read from a checkpointed position.
    pub fn resume(req: ListRequest, position: PagerPosition) -> Self {
        Pager {
            req,
            current_item: position.current_item.max(0),
            total: position.total,
            total_moved: false,
            previous_ids: None,
            done: position.done,
            pages: 0,
        }
    }

    pub fn request(&self) -> &ListRequest {
        &self.req
    }

    pub fn position(&self) -> PagerPosition {
        PagerPosition {
            current_item: self.current_item,
            total: self.total,
            done: self.done,
        }
    }

    /// The last `total` KiotViet reported.
    pub fn total(&self) -> Option<i64> {
        self.total
    }

    /// Whether `total` changed between pages of this read.
    pub fn total_moved(&self) -> bool {
        self.total_moved
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Pages fetched by this pager (since it was made or resumed).
    pub fn pages_read(&self) -> u64 {
        self.pages
    }

    /// The next page, or `None` when the read is complete. An empty last page is returned only
    /// when it carries removed ids. On error the position is unchanged: call again, or checkpoint.
    pub async fn next(&mut self, client: &KiotVietClient) -> Result<Option<Page>, KvError> {
        if self.done {
            return Ok(None);
        }
        let page = client.page(&self.req, self.current_item).await?;
        self.pages += 1;
        if let Some(total) = page.total {
            if self.total.is_some_and(|previous| previous != total) {
                tracing::info!(
                    entity = ?self.req.entity,
                    previous = ?self.total,
                    total,
                    current_item = self.current_item,
                    "KiotViet total moved during a paged read"
                );
                self.total_moved = true;
            }
            self.total = Some(total);
        }
        if page.data.is_empty() {
            self.done = true;
            return Ok((!page.removed_ids.is_empty()).then_some(page));
        }
        let ids = record_ids(&page.data);
        if !ids.is_empty() && self.previous_ids.as_ref() == Some(&ids) {
            return Err(KvError::Decode {
                path: format!(
                    "GET {} currentItem={}",
                    self.req.entity.path(),
                    self.current_item
                ),
                message:
                    "the page repeats the previous page's records; stopping instead of looping"
                        .to_owned(),
            });
        }
        // `data.len()` fits in i64 on every platform Rust supports.
        self.current_item += i64::try_from(page.data.len()).unwrap_or(i64::MAX);
        self.previous_ids = Some(ids);
        if self.total.is_some_and(|total| self.current_item >= total) {
            self.done = true;
        }
        Ok(Some(page))
    }
}

/// The ids of a page's records (`id`, or `categoryId` for categories), in order.
fn record_ids(data: &[Value]) -> Vec<i64> {
    data.iter().filter_map(record_id).collect()
}

impl KiotVietClient {
    /// One page of a list read at offset `current_item`.
    pub async fn page(&self, req: &ListRequest, current_item: i64) -> Result<Page, KvError> {
        let query = req.query(current_item, self.config().effective_page_size());
        let call = Call::get(req.entity.path(), query);
        self.call(&call).await
    }

    /// All pages of `req`, fetched lazily one after the other; the stream ends after an error.
    pub fn pages(
        &self,
        req: ListRequest,
    ) -> impl Stream<Item = Result<Page, KvError>> + Send + 'static {
        self.pages_from(Pager::new(req))
    }

    /// A full read with up to `concurrency` pages in flight once the first page has told the
    /// total; pages come out in order. Without a total it falls back to [`Self::pages`]' pace.
    /// For full reads only: offsets computed up front cannot follow a moving total.
    pub fn pages_concurrent(
        &self,
        req: ListRequest,
        concurrency: usize,
    ) -> impl Stream<Item = Result<Page, KvError>> + Send + 'static {
        let client = self.clone();
        let concurrency = concurrency.max(1);
        stream::once(async move {
            let first = match client.page(&req, 0).await {
                Ok(first) => first,
                Err(error) => return stream::iter(vec![Err(error)]).boxed(),
            };
            let stride = i64::try_from(first.data.len()).unwrap_or(i64::MAX);
            let rest = match first.total {
                Some(total) if stride > 0 && stride < total => {
                    let offsets: Vec<i64> = (1..)
                        .map(|k: i64| k.saturating_mul(stride))
                        .take_while(|offset| *offset < total)
                        .collect();
                    let client = client.clone();
                    let req = req.clone();
                    stream::iter(offsets)
                        .map(move |offset| {
                            let client = client.clone();
                            let req = req.clone();
                            async move { client.page(&req, offset).await }
                        })
                        .buffered(concurrency)
                        .boxed()
                }
                Some(_) => stream::empty().boxed(),
                None if stride == 0 => stream::empty().boxed(),
                None => {
                    let pager = Pager::resume(
                        req,
                        PagerPosition {
                            current_item: stride,
                            total: None,
                            done: false,
                        },
                    );
                    client.pages_from(pager).boxed()
                }
            };
            stream::iter(vec![Ok(first)]).chain(rest).boxed()
        })
        .flatten()
    }

    /// The remaining pages of a (resumed) pager, lazily.
    pub fn pages_from(
        &self,
        pager: Pager,
    ) -> impl Stream<Item = Result<Page, KvError>> + Send + 'static {
        let client = self.clone();
        stream::unfold(Some(pager), move |state| {
            let client = client.clone();
            async move {
                let mut pager = state?;
                match pager.next(&client).await {
                    Ok(Some(page)) => Some((Ok(page), Some(pager))),
                    Ok(None) => None,
                    Err(error) => Some((Err(error), None)),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn param<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
        query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn r_prd_2_products_never_ask_for_price_books() {
        // GIVEN a product read, even one that asks for price books
        let req = ListRequest::new(ListEntity::Products)
            .with("includePricebook", "true")
            .with("INCLUDEPRICEBOOK", "1");
        // WHEN the query is built THEN inventory is asked and price books never are
        let query = req.query(0, 100);
        assert_eq!(param(&query, "includeInventory"), Some("true"));
        assert!(
            query
                .iter()
                .all(|(k, _)| !k.to_lowercase().contains("pricebook")),
            "{query:?}"
        );
    }

    #[test]
    fn incremental_reads_send_vietnam_local_time_and_ask_for_removed_ids() {
        let from = Utc
            .with_ymd_and_hms(2026, 5, 1, 3, 0, 0)
            .single()
            .expect("valid");
        let query = ListRequest::new(ListEntity::Categories)
            .modified_since(from)
            .order_by("modifiedDate", OrderDirection::Asc)
            .query(200, 100);
        assert_eq!(param(&query, "pageSize"), Some("100"));
        assert_eq!(param(&query, "currentItem"), Some("200"));
        assert_eq!(param(&query, "hierachicalData"), Some("false"));
        assert_eq!(
            param(&query, "lastModifiedFrom"),
            Some("2026-05-01T10:00:00")
        );
        assert_eq!(param(&query, "includeRemoveIds"), Some("true"));
        assert_eq!(param(&query, "orderBy"), Some("modifiedDate"));
        assert_eq!(param(&query, "orderDirection"), Some("Asc"));
    }

    #[test]
    fn full_reads_do_not_ask_for_removed_ids_and_extra_params_replace_fixed_ones() {
        let query = ListRequest::new(ListEntity::Invoices)
            .with("includePayment", "false")
            .with("currentItem", "999")
            .with("branchIds", "233443")
            .query(0, 100);
        assert_eq!(param(&query, "includeRemoveIds"), None);
        assert_eq!(param(&query, "includePayment"), Some("false"));
        assert_eq!(param(&query, "currentItem"), Some("0"));
        assert_eq!(param(&query, "branchIds"), Some("233443"));
        assert_eq!(query.len(), 4, "{query:?}");
    }

    #[test]
    fn record_ids_read_id_or_category_id() {
        let data = vec![
            serde_json::json!({"id": 5}),
            serde_json::json!({"categoryId": 7}),
            serde_json::json!({"name": "no id"}),
        ];
        assert_eq!(record_ids(&data), vec![5, 7]);
    }

    #[test]
    fn positions_round_trip_through_json() {
        let position = PagerPosition {
            current_item: 300,
            total: Some(450),
            done: false,
        };
        let json = serde_json::to_string(&position).expect("serialises");
        let back: PagerPosition = serde_json::from_str(&json).expect("deserialises");
        assert_eq!(back, position);
        let pager = Pager::resume(ListRequest::new(ListEntity::Customers), back);
        assert_eq!(pager.position(), position);
    }
}
