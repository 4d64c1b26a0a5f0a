//! [`BudgetStore`] on DynamoDB.
//!
//! Item: `pk = "BUDGET#{retailer}"`, `sk = "{window start}"` (RFC 3339, UTC, seconds),
//! `used` N (GET calls granted in the window), `expires_at` N (TTL: two hours after the window
//! starts, i.e. an hour after it ends).
//!
//! One UpdateItem takes `n` calls: `ADD used :n` on the condition that `used + n` stays within
//! the limit, so every function and every Lambda instance draws from the same count.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{ReturnValue, ReturnValuesOnConditionCheckFailure};
use chrono::{DateTime, Duration, SecondsFormat, Utc};

use super::{DynamoStore, Item, get_n, key, n, names, update_condition_failed, values};
use crate::StoreError;
use crate::model::BudgetAnswer;
use crate::ports::BudgetStore;

fn used_in(item: Option<&Item>) -> u32 {
    item.and_then(|i| get_n::<u32>(i, "used", "budget item").ok())
        .unwrap_or(0)
}

#[async_trait]
impl BudgetStore for DynamoStore {
    async fn take(
        &self,
        retailer: &str,
        window_start: DateTime<Utc>,
        n_: u32,
        limit: u32,
    ) -> Result<BudgetAnswer, StoreError> {
        if n_ > limit {
            return Ok(BudgetAnswer::Exhausted { used: 0 });
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(
                format!("BUDGET#{retailer}"),
                window_start.to_rfc3339_opts(SecondsFormat::Secs, true),
            )))
            .update_expression("ADD #used :n SET #exp = :exp")
            .condition_expression("attribute_not_exists(#used) OR #used <= :max_before")
            .set_expression_attribute_names(Some(names([
                ("#used", "used"),
                ("#exp", "expires_at"),
            ])))
            .set_expression_attribute_values(Some(values([
                (":n", n(n_)),
                (":max_before", n(limit - n_)),
                (":exp", n((window_start + Duration::hours(2)).timestamp())),
            ])))
            .return_values(ReturnValue::UpdatedNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => Ok(BudgetAnswer::Granted {
                used: used_in(out.attributes.as_ref()),
            }),
            Err(e) => {
                let old = update_condition_failed("dynamodb update_item (budget)", e)?;
                Ok(BudgetAnswer::Exhausted {
                    used: used_in(old.as_ref()),
                })
            }
        }
    }
}
