//! [`CursorStore`] and [`CheckpointStore`] on DynamoDB.
//!
//! Cursor item: `pk = "SHOP#{shop}"`, `sk = "CURSOR#{entity}"`, `modified_from` S (RFC 3339, for
//! people), `modified_from_ns` N (epoch nanoseconds, what the never-backwards condition compares).
//!
//! Checkpoint item: `pk = "SHOP#{shop}"`, `sk = "CKPT#{entity}"`, `checkpoint` (the JSON value as a
//! native DynamoDB value: M, L, S, N, BOOL or NULL).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{
    DynamoStore, from_av, get_n, key, n, names, put_condition_failed, s, shop_pk, time_from_ns,
    time_ns, time_text, to_av, values,
};
use crate::StoreError;
use crate::model::Cursor;
use crate::ports::{CheckpointStore, CursorStore};

fn cursor_sk(entity: &str) -> String {
    format!("CURSOR#{entity}")
}

fn checkpoint_sk(entity: &str) -> String {
    format!("CKPT#{entity}")
}

#[async_trait]
impl CursorStore for DynamoStore {
    async fn get_cursor(&self, shop: &str, entity: &str) -> Result<Option<Cursor>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(shop_pk(shop), cursor_sk(entity))))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::aws("dynamodb get_item (cursor)", e))?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let ns: i64 = get_n(&item, "modified_from_ns", "cursor item")?;
        Ok(Some(Cursor {
            modified_from: time_from_ns(ns),
        }))
    }

    async fn advance_cursor(
        &self,
        shop: &str,
        entity: &str,
        to: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut item = key(shop_pk(shop), cursor_sk(entity));
        item.insert("modified_from".into(), s(time_text(to)));
        item.insert("modified_from_ns".into(), n(time_ns(to)));
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk) OR #at <= :to")
            .set_expression_attribute_names(Some(names([
                ("#pk", "pk"),
                ("#at", "modified_from_ns"),
            ])))
            .set_expression_attribute_values(Some(values([(":to", n(time_ns(to)))])))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) => put_condition_failed("dynamodb put_item (cursor)", e).map(|_| false),
        }
    }

    async fn reset_cursor(&self, shop: &str, entity: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(shop_pk(shop), cursor_sk(entity))))
            .send()
            .await
            .map_err(|e| StoreError::aws("dynamodb delete_item (cursor)", e))?;
        Ok(())
    }
}

#[async_trait]
impl CheckpointStore for DynamoStore {
    async fn get_checkpoint(&self, shop: &str, entity: &str) -> Result<Option<Value>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(shop_pk(shop), checkpoint_sk(entity))))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::aws("dynamodb get_item (checkpoint)", e))?;
        out.item
            .and_then(|mut item| item.remove("checkpoint"))
            .map(|av| from_av(av, "checkpoint item"))
            .transpose()
    }

    async fn put_checkpoint(
        &self,
        shop: &str,
        entity: &str,
        checkpoint: &Value,
    ) -> Result<(), StoreError> {
        let mut item = key(shop_pk(shop), checkpoint_sk(entity));
        item.insert("checkpoint".into(), to_av(checkpoint, "checkpoint")?);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| StoreError::aws("dynamodb put_item (checkpoint)", e))?;
        Ok(())
    }

    async fn clear_checkpoint(&self, shop: &str, entity: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(shop_pk(shop), checkpoint_sk(entity))))
            .send()
            .await
            .map_err(|e| StoreError::aws("dynamodb delete_item (checkpoint)", e))?;
        Ok(())
    }
}
