//! [`CursorStore`] and [`CheckpointStore`] on DynamoDB.
//!
//! One item per (shop, entity) holds both: `pk = "SHOP#{shop}"`, `sk = "CURSOR#{entity}"`,
//! `modified_from` S (RFC 3339, for people) and `modified_from_ns` N (epoch nanoseconds, what the
//! never-backwards condition compares) when there is a cursor, `checkpoint` (the JSON value as a
//! native DynamoDB value: M, L, S, N, BOOL or NULL) while a pull is under way. A pull that starts
//! reads both with one GetItem (issue 16); every write touches only its own attributes.
//! (`CKPT#{entity}` items of older versions are ignored: a pull then starts from the cursor.)

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use aws_sdk_dynamodb::types::AttributeValue;

use super::{
    DynamoStore, Item, from_av, get_n, key, n, names, s, shop_pk, time_from_ns, time_ns, time_text,
    to_av, update_condition_failed, values,
};
use crate::StoreError;
use crate::model::{Checkpoint, Cursor};
use crate::ports::{CheckpointStore, CursorStore};

fn cursor_sk(entity: &str) -> String {
    format!("CURSOR#{entity}")
}

impl DynamoStore {
    async fn cursor_item(&self, shop: &str, entity: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(shop_pk(shop), cursor_sk(entity))))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::aws("dynamodb get_item (cursor)", e))?;
        Ok(out.item)
    }

    /// An UpdateItem of the cursor item; `only_if_present` makes it a no-op on an absent item.
    #[allow(clippy::too_many_arguments)]
    async fn update_cursor_item(
        &self,
        shop: &str,
        entity: &str,
        op: &'static str,
        expression: &str,
        names_: &[(&str, &str)],
        values_: Vec<(&str, AttributeValue)>,
        only_if_present: bool,
    ) -> Result<(), StoreError> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(shop_pk(shop), cursor_sk(entity))))
            .update_expression(expression);
        for (k, v) in names_ {
            update = update.expression_attribute_names(*k, *v);
        }
        for (k, v) in values_ {
            update = update.expression_attribute_values(k, v);
        }
        if only_if_present {
            update = update
                .condition_expression("attribute_exists(#pk)")
                .expression_attribute_names("#pk", "pk");
        }
        match update.send().await {
            Ok(_) => Ok(()),
            Err(e) => update_condition_failed(op, e).map(|_| ()),
        }
    }
}

fn cursor_of(item: &Item) -> Result<Option<Cursor>, StoreError> {
    if !item.contains_key("modified_from_ns") {
        return Ok(None);
    }
    let ns: i64 = get_n(item, "modified_from_ns", "cursor item")?;
    Ok(Some(Cursor {
        modified_from: time_from_ns(ns),
    }))
}

/// The item's checkpoint; one that does not read as a [`Checkpoint`] counts as absent (logged).
fn checkpoint_of(item: &mut Item) -> Option<Checkpoint> {
    let av = item.remove("checkpoint")?;
    match from_av::<Checkpoint>(av, "checkpoint") {
        Ok(ck) => Some(ck),
        Err(e) => {
            tracing::warn!(error = %e, "a stored checkpoint no longer reads; the pull starts afresh");
            None
        }
    }
}

#[async_trait]
impl CursorStore for DynamoStore {
    async fn get_cursor(&self, shop: &str, entity: &str) -> Result<Option<Cursor>, StoreError> {
        match self.cursor_item(shop, entity).await? {
            Some(item) => cursor_of(&item),
            None => Ok(None),
        }
    }

    async fn advance_cursor(
        &self,
        shop: &str,
        entity: &str,
        to: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(shop_pk(shop), cursor_sk(entity))))
            .update_expression("SET #text = :text, #at = :to")
            .condition_expression("attribute_not_exists(#at) OR #at <= :to")
            .set_expression_attribute_names(Some(names([
                ("#text", "modified_from"),
                ("#at", "modified_from_ns"),
            ])))
            .set_expression_attribute_values(Some(values([
                (":text", s(time_text(to))),
                (":to", n(time_ns(to))),
            ])))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) => update_condition_failed("dynamodb update_item (cursor)", e).map(|_| false),
        }
    }

    async fn reset_cursor(&self, shop: &str, entity: &str) -> Result<(), StoreError> {
        self.update_cursor_item(
            shop,
            entity,
            "dynamodb update_item (cursor reset)",
            "REMOVE #text, #at",
            &[("#text", "modified_from"), ("#at", "modified_from_ns")],
            Vec::new(),
            true,
        )
        .await
    }
}

#[async_trait]
impl CheckpointStore for DynamoStore {
    async fn get_checkpoint(
        &self,
        shop: &str,
        entity: &str,
    ) -> Result<Option<Checkpoint>, StoreError> {
        Ok(self
            .cursor_item(shop, entity)
            .await?
            .and_then(|mut item| checkpoint_of(&mut item)))
    }

    async fn put_checkpoint(
        &self,
        shop: &str,
        entity: &str,
        checkpoint: &Checkpoint,
    ) -> Result<(), StoreError> {
        self.update_cursor_item(
            shop,
            entity,
            "dynamodb update_item (checkpoint)",
            "SET #ck = :ck",
            &[("#ck", "checkpoint")],
            vec![(":ck", to_av(checkpoint, "checkpoint")?)],
            false,
        )
        .await
    }

    async fn clear_checkpoint(&self, shop: &str, entity: &str) -> Result<(), StoreError> {
        self.update_cursor_item(
            shop,
            entity,
            "dynamodb update_item (checkpoint clear)",
            "REMOVE #ck",
            &[("#ck", "checkpoint")],
            Vec::new(),
            true,
        )
        .await
    }

    async fn get_checkpoint_and_cursor(
        &self,
        shop: &str,
        entity: &str,
    ) -> Result<(Option<Checkpoint>, Option<Option<Cursor>>), StoreError> {
        match self.cursor_item(shop, entity).await? {
            Some(mut item) => {
                let cursor = cursor_of(&item)?;
                Ok((checkpoint_of(&mut item), Some(cursor)))
            }
            None => Ok((None, Some(None))),
        }
    }
}

#[cfg(test)]
mod checkpoint_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use serde_json::json;

    use super::*;

    /// A checkpoint written by another version (here: the opaque shape of old tests) is absent,
    /// so the pull starts afresh instead of failing on it for ever.
    #[test]
    fn a_checkpoint_that_no_longer_reads_is_absent_not_an_error() {
        let mut item = Item::new();
        item.insert(
            "checkpoint".into(),
            to_av(&json!({"page": 4}), "test").unwrap(),
        );
        assert_eq!(checkpoint_of(&mut item), None);
        assert!(!item.contains_key("checkpoint"));
        assert_eq!(checkpoint_of(&mut Item::new()), None);
    }
}
