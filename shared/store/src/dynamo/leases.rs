//! [`LeaseStore`] on DynamoDB.
//!
//! Item: `pk = "SHOP#{shop}"`, `sk = "LEASE#{scope}"`, `holder` S, `until` S (RFC 3339),
//! `until_ns` N (epoch nanoseconds, compared by the conditions), `expires_at` N (TTL: a day after
//! `until`, only to clean up; expiry of the lease itself is `until`).

use async_trait::async_trait;
use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
use chrono::{DateTime, Duration, Utc};

use super::{
    DynamoStore, Item, delete_condition_failed, get_n, get_s, key, n, names, put_condition_failed,
    s, shop_pk, time_from_ns, time_ns, time_text, values,
};
use crate::StoreError;
use crate::model::LeaseAnswer;
use crate::ports::LeaseStore;

fn lease_sk(scope: &str) -> String {
    format!("LEASE#{scope}")
}

fn lease_item(shop: &str, scope: &str, holder: &str, until: DateTime<Utc>) -> Item {
    let mut item = key(shop_pk(shop), lease_sk(scope));
    item.insert("holder".into(), s(holder));
    item.insert("until".into(), s(time_text(until)));
    item.insert("until_ns".into(), n(time_ns(until)));
    item.insert(
        "expires_at".into(),
        n((until + Duration::days(1)).timestamp()),
    );
    item
}

fn held_by(item: &Item) -> Result<LeaseAnswer, StoreError> {
    Ok(LeaseAnswer::HeldBy {
        holder: get_s(item, "holder", "lease item")?.to_owned(),
        until: time_from_ns(get_n(item, "until_ns", "lease item")?),
    })
}

#[async_trait]
impl LeaseStore for DynamoStore {
    async fn acquire_lease(
        &self,
        shop: &str,
        scope: &str,
        holder: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<LeaseAnswer, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(lease_item(shop, scope, holder, until)))
            .condition_expression(
                "attribute_not_exists(#pk) OR #until <= :now OR #holder = :holder",
            )
            .set_expression_attribute_names(Some(names([
                ("#pk", "pk"),
                ("#until", "until_ns"),
                ("#holder", "holder"),
            ])))
            .set_expression_attribute_values(Some(values([
                (":now", n(time_ns(now))),
                (":holder", s(holder)),
            ])))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(LeaseAnswer::Acquired),
            Err(e) => match put_condition_failed("dynamodb put_item (lease)", e)? {
                Some(old) => held_by(&old),
                // Only if the service did not return the old item: read it.
                None => self.read_lease(shop, scope, now).await,
            },
        }
    }

    async fn renew_lease(
        &self,
        shop: &str,
        scope: &str,
        holder: &str,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(lease_item(shop, scope, holder, until)))
            .condition_expression("#holder = :holder")
            .set_expression_attribute_names(Some(names([("#holder", "holder")])))
            .set_expression_attribute_values(Some(values([(":holder", s(holder))])))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) => put_condition_failed("dynamodb put_item (lease renewal)", e).map(|_| false),
        }
    }

    async fn release_lease(
        &self,
        shop: &str,
        scope: &str,
        holder: &str,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(shop_pk(shop), lease_sk(scope))))
            .condition_expression("#holder = :holder")
            .set_expression_attribute_names(Some(names([("#holder", "holder")])))
            .set_expression_attribute_values(Some(values([(":holder", s(holder))])))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) => delete_condition_failed("dynamodb delete_item (lease)", e).map(|_| false),
        }
    }
}

impl DynamoStore {
    /// The current holder after a lost race whose answer carried no old item.
    async fn read_lease(
        &self,
        shop: &str,
        scope: &str,
        now: DateTime<Utc>,
    ) -> Result<LeaseAnswer, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(shop_pk(shop), lease_sk(scope))))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::aws("dynamodb get_item (lease)", e))?;
        match out.item {
            Some(item) => held_by(&item),
            // Released between our write and our read: report it as held until now, so the
            // caller simply tries again.
            None => Ok(LeaseAnswer::HeldBy {
                holder: String::new(),
                until: now,
            }),
        }
    }
}
