//! [`ConnectionStore`] on DynamoDB.
//!
//! Item: `pk = "CONNECTIONS"`, `sk = "{shop_id}"`, then the [`Connection`] fields as attributes
//! (serde_dynamo): `shop_id` S, `account_type` S, `retailer` S, `client_id` S, `sealed_secret` S
//! (KMS ciphertext, base64), `branch_id` N, `sync` M {`products`, `customers`, `orders`: BOOL},
//! `keep_app_product_status` BOOL, `invoice_history_days` N, `shop_token_hash` S|NULL,
//! `webhook_secret` S|NULL, `webhook_ids` L[N], `created_at` S, `updated_at` S (RFC 3339).
//!
//! Shop-token index: `pk = "TOKEN#{shop_token_hash}"`, `sk = "-"`, `shop_id` S — one item per
//! current shop token, so a request with someone else's token is told apart (403) from a wrong one
//! (401) in one read, not a read of every connection. Written with the connection; the rotated
//! token's item is deleted. Connections saved before the index existed get theirs on their next
//! save (until then another shop's token answers 401, not 403).
//!
//! All connections share one partition so the scheduler's fan-out is a paged Query, not a Scan.
//! A connection is read once per run and written rarely: far below one partition's
//! 3,000 reads / 1,000 writes per second even for thousands of shops.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::ReturnValue;

use super::{DynamoStore, Item, key, names, s, values};
use crate::StoreError;
use crate::model::{Connection, ConnectionPage};
use crate::ports::ConnectionStore;

const PK: &str = "CONNECTIONS";

fn token_pk(token_hash: &str) -> String {
    format!("TOKEN#{token_hash}")
}

fn token_hash_of(item: &Item) -> Option<String> {
    item.get("shop_token_hash")
        .and_then(|v| v.as_s().ok())
        .cloned()
}

fn decode(item: Item) -> Result<Connection, StoreError> {
    serde_dynamo::from_item(item).map_err(|e| StoreError::malformed("connection item", e))
}

#[async_trait]
impl ConnectionStore for DynamoStore {
    async fn get_connection(&self, shop: &str) -> Result<Option<Connection>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(PK, shop)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::aws("dynamodb get_item (connection)", e))?;
        out.item.map(decode).transpose()
    }

    async fn put_connection(&self, connection: &Connection) -> Result<(), StoreError> {
        let mut item: Item = serde_dynamo::to_item(connection)
            .map_err(|e| StoreError::malformed("connection", e))?;
        item.extend(key(PK, connection.shop_id.as_str()));
        let out = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| StoreError::aws("dynamodb put_item (connection)", e))?;
        let old = out.attributes.as_ref().and_then(token_hash_of);
        if let Some(hash) = &connection.shop_token_hash {
            let mut index = key(token_pk(hash), "-");
            index.insert("shop_id".into(), s(connection.shop_id.as_str()));
            self.client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(index))
                .send()
                .await
                .map_err(|e| StoreError::aws("dynamodb put_item (shop token index)", e))?;
        }
        if let Some(old) = old.filter(|old| Some(old) != connection.shop_token_hash.as_ref()) {
            self.forget_token(&old).await?;
        }
        Ok(())
    }

    async fn delete_connection(&self, shop: &str) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(PK, shop)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| StoreError::aws("dynamodb delete_item (connection)", e))?;
        if let Some(old) = out.attributes.as_ref().and_then(token_hash_of) {
            self.forget_token(&old).await?;
        }
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }

    async fn shop_of_token(&self, token_hash: &str) -> Result<Option<String>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(token_pk(token_hash), "-")))
            .send()
            .await
            .map_err(|e| StoreError::aws("dynamodb get_item (shop token index)", e))?;
        Ok(out
            .item
            .and_then(|item| item.get("shop_id").and_then(|v| v.as_s().ok()).cloned()))
    }

    async fn list_connections_page(
        &self,
        after: Option<&str>,
    ) -> Result<ConnectionPage, StoreError> {
        // Only the `CONNECTIONS` partition: token index items live in partitions of their own.
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk")
            .set_expression_attribute_names(Some(names([("#pk", "pk")])))
            .set_expression_attribute_values(Some(values([(":pk", s(PK))])))
            .set_limit(self.page_limit)
            .set_exclusive_start_key(after.map(|shop| key(PK, shop)))
            .send()
            .await
            .map_err(|e| StoreError::aws("dynamodb query (connections)", e))?;
        let mut connections = Vec::new();
        for item in out.items.unwrap_or_default() {
            // One unreadable connection must not stop the fan-out for every other shop.
            let shop = item
                .get("sk")
                .and_then(|sk| sk.as_s().ok())
                .cloned()
                .unwrap_or_default();
            match decode(item) {
                Ok(connection) => connections.push(connection),
                Err(error) => tracing::error!(%shop, %error, "skipping an unreadable connection"),
            }
        }
        // The next page starts after the last item DynamoDB read, readable or not.
        let next = out
            .last_evaluated_key
            .and_then(|last| last.get("sk").and_then(|sk| sk.as_s().ok()).cloned());
        Ok(ConnectionPage { connections, next })
    }
}

impl DynamoStore {
    async fn forget_token(&self, token_hash: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(token_pk(token_hash), "-")))
            .send()
            .await
            .map_err(|e| StoreError::aws("dynamodb delete_item (shop token index)", e))?;
        Ok(())
    }
}
