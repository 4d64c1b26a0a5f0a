//! [`IdMapStore`] on DynamoDB.
//!
//! Forward item: `pk = "SHOP#{shop}"`, `sk = "MAP#{kind}#KV#{kiotviet_id}"`, `kiotviet_id` N,
//! `abaha_id` S, `hash` S (absent when unknown).
//! Reverse item: `pk = "SHOP#{shop}"`, `sk = "MAP#{kind}#AB#{abaha_id}"`, `kiotviet_id` N.
//!
//! Both are written by the same batch but not atomically, and a relinked KiotViet id leaves its old
//! reverse item behind; so a reverse lookup is confirmed against the forward item before it is
//! believed.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{KeysAndAttributes, PutRequest, WriteRequest};

use super::{BATCH_ATTEMPTS, DynamoStore, Item, batch_backoff, get_n, get_s, key, n, s, shop_pk};
use crate::StoreError;
use crate::model::{IdKind, IdLink};
use crate::ports::IdMapStore;

/// BatchGetItem takes at most 100 keys, BatchWriteItem at most 25 writes.
const GET_BATCH: usize = 100;
const WRITE_BATCH: usize = 25;

fn forward_sk(kind: IdKind, kiotviet_id: i64) -> String {
    format!("MAP#{kind}#KV#{kiotviet_id}")
}

fn reverse_sk(kind: IdKind, abaha_id: &str) -> String {
    format!("MAP#{kind}#AB#{abaha_id}")
}

fn decode_forward(item: &Item) -> Result<(i64, IdLink), StoreError> {
    let kiotviet_id = get_n(item, "kiotviet_id", "id map item")?;
    let abaha_id = get_s(item, "abaha_id", "id map item")?.to_owned();
    let hash = match item.get("hash") {
        Some(aws_sdk_dynamodb::types::AttributeValue::S(h)) => Some(h.clone()),
        _ => None,
    };
    Ok((kiotviet_id, IdLink { abaha_id, hash }))
}

fn build_error(what: &str, e: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::malformed(what, e)
}

impl DynamoStore {
    async fn get_forward(
        &self,
        shop: &str,
        kind: IdKind,
        kiotviet_id: i64,
    ) -> Result<Option<IdLink>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(shop_pk(shop), forward_sk(kind, kiotviet_id))))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::aws("dynamodb get_item (id map)", e))?;
        out.item
            .map(|item| decode_forward(&item).map(|(_, link)| link))
            .transpose()
    }

    /// One BatchGetItem of at most 100 keys, repeated for its unprocessed keys.
    async fn batch_get(&self, keys: Vec<Item>) -> Result<Vec<Item>, StoreError> {
        let mut found = Vec::with_capacity(keys.len());
        let mut pending = keys;
        for attempt in 0..BATCH_ATTEMPTS {
            if attempt > 0 {
                batch_backoff(attempt).await;
            }
            let request = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut pending)))
                .consistent_read(true)
                .build()
                .map_err(|e| build_error("batch get request", e))?;
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(|e| StoreError::aws("dynamodb batch_get_item (id map)", e))?;
            if let Some(mut responses) = out.responses {
                found.extend(responses.remove(&self.table).unwrap_or_default());
            }
            pending = out
                .unprocessed_keys
                .and_then(|mut u| u.remove(&self.table))
                .map(|k| k.keys)
                .unwrap_or_default();
            if pending.is_empty() {
                return Ok(found);
            }
            tracing::debug!(
                left = pending.len(),
                attempt,
                "batch_get_item left keys unprocessed"
            );
        }
        Err(StoreError::Unprocessed {
            op: "dynamodb batch_get_item (id map)",
            left: pending.len(),
            attempts: BATCH_ATTEMPTS,
        })
    }

    /// One BatchWriteItem of at most 25 puts, repeated for its unprocessed items.
    async fn batch_write(&self, writes: Vec<WriteRequest>) -> Result<(), StoreError> {
        let mut pending = writes;
        for attempt in 0..BATCH_ATTEMPTS {
            if attempt > 0 {
                batch_backoff(attempt).await;
            }
            let out = self
                .client
                .batch_write_item()
                .request_items(&self.table, std::mem::take(&mut pending))
                .send()
                .await
                .map_err(|e| StoreError::aws("dynamodb batch_write_item (id map)", e))?;
            pending = out
                .unprocessed_items
                .and_then(|mut u| u.remove(&self.table))
                .unwrap_or_default();
            if pending.is_empty() {
                return Ok(());
            }
            tracing::debug!(
                left = pending.len(),
                attempt,
                "batch_write_item left items unprocessed"
            );
        }
        Err(StoreError::Unprocessed {
            op: "dynamodb batch_write_item (id map)",
            left: pending.len(),
            attempts: BATCH_ATTEMPTS,
        })
    }
}

/// BatchWriteItem calls one `put_links` sends at once.
const WRITES_IN_FLIGHT: usize = 4;

fn put_request(item: Item) -> Result<WriteRequest, StoreError> {
    let put = PutRequest::builder()
        .set_item(Some(item))
        .build()
        .map_err(|e| build_error("batch write request", e))?;
    Ok(WriteRequest::builder().put_request(put).build())
}

#[async_trait]
impl IdMapStore for DynamoStore {
    async fn get_link(
        &self,
        shop: &str,
        kind: IdKind,
        kiotviet_id: i64,
    ) -> Result<Option<IdLink>, StoreError> {
        self.get_forward(shop, kind, kiotviet_id).await
    }

    async fn get_links(
        &self,
        shop: &str,
        kind: IdKind,
        kiotviet_ids: &[i64],
    ) -> Result<HashMap<i64, IdLink>, StoreError> {
        // BatchGetItem refuses duplicate keys in one request.
        let mut seen = HashSet::new();
        let unique: Vec<i64> = kiotviet_ids
            .iter()
            .copied()
            .filter(|id| seen.insert(*id))
            .collect();
        let mut links = HashMap::with_capacity(unique.len());
        for chunk in unique.chunks(GET_BATCH) {
            let keys = chunk
                .iter()
                .map(|id| key(shop_pk(shop), forward_sk(kind, *id)))
                .collect();
            for item in self.batch_get(keys).await? {
                let (id, link) = decode_forward(&item)?;
                links.insert(id, link);
            }
        }
        Ok(links)
    }

    async fn put_links(
        &self,
        shop: &str,
        kind: IdKind,
        links: &[(i64, IdLink)],
    ) -> Result<(), StoreError> {
        // BatchWriteItem refuses two writes to one key in a request: the last link of an id wins,
        // and of two ids claiming one Abaha id the later one owns the reverse item.
        let mut items: Vec<(String, Item)> = Vec::with_capacity(links.len() * 2);
        let mut position: HashMap<String, usize> = HashMap::new();
        let mut push = |sk: String, item: Item| match position.get(&sk) {
            Some(&i) => items[i].1 = item,
            None => {
                position.insert(sk.clone(), items.len());
                items.push((sk, item));
            }
        };
        for (kiotviet_id, link) in links {
            let sk = forward_sk(kind, *kiotviet_id);
            let mut forward = key(shop_pk(shop), sk.as_str());
            forward.insert("kiotviet_id".into(), n(kiotviet_id));
            forward.insert("abaha_id".into(), s(link.abaha_id.as_str()));
            if let Some(hash) = &link.hash {
                forward.insert("hash".into(), s(hash.as_str()));
            }
            push(sk, forward);

            if kind.has_reverse() {
                let sk = reverse_sk(kind, &link.abaha_id);
                let mut reverse = key(shop_pk(shop), sk.as_str());
                reverse.insert("kiotviet_id".into(), n(kiotviet_id));
                push(sk, reverse);
            }
        }
        let writes = items
            .into_iter()
            .map(|(_, item)| put_request(item))
            .collect::<Result<Vec<_>, _>>()?;
        // The batches are independent: send a few at once (a page of links is 4 to 8 batches).
        let mut writes = writes.into_iter().peekable();
        let mut batches = Vec::new();
        while writes.peek().is_some() {
            batches.push(
                writes
                    .by_ref()
                    .take(WRITE_BATCH)
                    .collect::<Vec<WriteRequest>>(),
            );
        }
        for group in batches.chunks(WRITES_IN_FLIGHT) {
            futures::future::try_join_all(group.iter().map(|b| self.batch_write(b.clone())))
                .await?;
        }
        Ok(())
    }

    async fn kiotviet_for_abaha(
        &self,
        shop: &str,
        kind: IdKind,
        abaha_id: &str,
    ) -> Result<Option<i64>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(shop_pk(shop), reverse_sk(kind, abaha_id))))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::aws("dynamodb get_item (id map reverse)", e))?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let kiotviet_id: i64 = get_n(&item, "kiotviet_id", "id map reverse item")?;
        // A stale reverse item (the KiotViet id was relinked since) does not count.
        let current = self.get_forward(shop, kind, kiotviet_id).await?;
        Ok(current
            .filter(|link| link.abaha_id == abaha_id)
            .map(|_| kiotviet_id))
    }
}
