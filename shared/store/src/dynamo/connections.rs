//! [`ConnectionStore`] on DynamoDB.
//!
//! Item: `pk = "CONNECTIONS"`, `sk = "{shop_id}"`, then the [`Connection`] fields as attributes
//! (serde_dynamo): `shop_id` S, `account_type` S, `retailer` S, `client_id` S, `sealed_secret` S
//! (KMS ciphertext, base64), `branch_id` N, `sync` M {`products`, `customers`, `orders`: BOOL},
//! `keep_app_product_status` BOOL, `invoice_history_days` N, `shop_token_hash` S|NULL,
//! `webhook_secret` S|NULL, `webhook_ids` L[N], `created_at` S, `updated_at` S (RFC 3339).
//!
//! All connections share one partition so the scheduler's fan-out is a paged Query, not a Scan.
//! A connection is read once per run and written rarely: far below one partition's
//! 3,000 reads / 1,000 writes per second even for thousands of shops.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::ReturnValue;

use super::{DynamoStore, Item, key, names, s, values};
use crate::StoreError;
use crate::model::Connection;
use crate::ports::ConnectionStore;

const PK: &str = "CONNECTIONS";

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
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| StoreError::aws("dynamodb put_item (connection)", e))?;
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
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }

    async fn list_connections(&self) -> Result<Vec<Connection>, StoreError> {
        let mut connections = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk")
                .set_expression_attribute_names(Some(names([("#pk", "pk")])))
                .set_expression_attribute_values(Some(values([(":pk", s(PK))])))
                .set_limit(self.page_limit)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| StoreError::aws("dynamodb query (connections)", e))?;
            for item in out.items.unwrap_or_default() {
                // One unreadable connection must not stop the fan-out for every other shop.
                let shop = item
                    .get("sk")
                    .and_then(|sk| sk.as_s().ok())
                    .cloned()
                    .unwrap_or_default();
                match decode(item) {
                    Ok(connection) => connections.push(connection),
                    Err(error) => {
                        tracing::error!(%shop, %error, "skipping an unreadable connection")
                    }
                }
            }
            match out.last_evaluated_key {
                Some(last) if !last.is_empty() => start = Some(last),
                _ => break,
            }
        }
        Ok(connections)
    }
}
