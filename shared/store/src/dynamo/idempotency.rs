//! [`IdempotencyStore`] on DynamoDB, after Powertools for AWS Lambda's persistence layer.
//!
//! Item: `pk = "SHOP#{shop}"`, `sk = "IDEM#{key}"`, `status` S (`INPROGRESS` | `COMPLETED`),
//! `in_progress_until` S (RFC 3339) and `in_progress_until_ns` N while in progress, `answer` (the
//! JSON answer to replay, native DynamoDB value) once completed, `expires_at` N (TTL: a day after
//! the in-progress expiry; 400 days after completion).
//!
//! One conditional PutItem claims a key; when the condition fails, the old item comes back with
//! the failure (`ReturnValuesOnConditionCheckFailure = ALL_OLD`), so no second read is needed.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use super::{
    DynamoStore, Item, delete_condition_failed, from_av, get_n, get_s, is_expired, key, n, names,
    put_condition_failed, s, shop_pk, time_from_ns, time_ns, time_text, to_av, values,
};
use crate::StoreError;
use crate::model::Claim;
use crate::ports::IdempotencyStore;

const IN_PROGRESS: &str = "INPROGRESS";
const COMPLETED: &str = "COMPLETED";

/// How long a completed answer is replayed.
pub const COMPLETED_TTL: Duration = Duration::days(400);
/// How long an abandoned in-progress record lingers after its expiry before TTL removes it.
const IN_PROGRESS_LINGER: Duration = Duration::days(1);

fn idem_sk(key: &str) -> String {
    format!("IDEM#{key}")
}

/// What an existing, unexpired record means for a new claim.
fn answer_from(item: Item) -> Result<Claim, StoreError> {
    let status = get_s(&item, "status", "idempotency item")?;
    match status {
        COMPLETED => {
            let answer = item
                .get("answer")
                .cloned()
                .map(|av| from_av(av, "idempotency answer"))
                .transpose()?;
            Ok(Claim::Completed(answer.unwrap_or(Value::Null)))
        }
        IN_PROGRESS => Ok(Claim::InProgress {
            until: time_from_ns(get_n(&item, "in_progress_until_ns", "idempotency item")?),
        }),
        other => Err(StoreError::malformed(
            "idempotency item",
            format!("unknown status {other}"),
        )),
    }
}

#[async_trait]
impl IdempotencyStore for DynamoStore {
    async fn claim(
        &self,
        shop: &str,
        key_: &str,
        in_progress_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        // A lost race whose failure carries no old item (the record vanished in between) is retried.
        for _ in 0..3 {
            let mut item = key(shop_pk(shop), idem_sk(key_));
            item.insert("status".into(), s(IN_PROGRESS));
            item.insert("in_progress_until".into(), s(time_text(in_progress_until)));
            item.insert("in_progress_until_ns".into(), n(time_ns(in_progress_until)));
            item.insert(
                "expires_at".into(),
                n((in_progress_until + IN_PROGRESS_LINGER).timestamp()),
            );
            let result = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression(
                    "attribute_not_exists(#pk) OR #exp <= :now_s OR (#status = :in_progress AND #until <= :now_ns)",
                )
                .set_expression_attribute_names(Some(names([
                    ("#pk", "pk"),
                    ("#exp", "expires_at"),
                    ("#status", "status"),
                    ("#until", "in_progress_until_ns"),
                ])))
                .set_expression_attribute_values(Some(values([
                    (":now_s", n(now.timestamp())),
                    (":now_ns", n(time_ns(now))),
                    (":in_progress", s(IN_PROGRESS)),
                ])))
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .send()
                .await;
            let old = match result {
                Ok(_) => return Ok(Claim::Claimed),
                Err(e) => put_condition_failed("dynamodb put_item (idempotency claim)", e)?,
            };
            let old = match old {
                Some(old) => Some(old),
                None => self.read_record(shop, key_).await?,
            };
            match old {
                Some(item) if !is_expired(&item, now) => return answer_from(item),
                _ => continue,
            }
        }
        Err(StoreError::Unprocessed {
            op: "dynamodb put_item (idempotency claim)",
            left: 1,
            attempts: 3,
        })
    }

    async fn complete(&self, shop: &str, key_: &str, answer: &Value) -> Result<(), StoreError> {
        let mut item = key(shop_pk(shop), idem_sk(key_));
        item.insert("status".into(), s(COMPLETED));
        item.insert("answer".into(), to_av(answer, "idempotency answer")?);
        // Wall clock on purpose: this is only the replay horizon and the TTL clean-up time.
        item.insert(
            "expires_at".into(),
            n((Utc::now() + COMPLETED_TTL).timestamp()),
        );
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| StoreError::aws("dynamodb put_item (idempotency complete)", e))?;
        Ok(())
    }

    async fn release(&self, shop: &str, key_: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(shop_pk(shop), idem_sk(key_))))
            .condition_expression("#status = :in_progress")
            .set_expression_attribute_names(Some(names([("#status", "status")])))
            .set_expression_attribute_values(Some(values([(":in_progress", s(IN_PROGRESS))])))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Completed (or already gone): nothing to release.
            Err(e) => {
                delete_condition_failed("dynamodb delete_item (idempotency release)", e).map(|_| ())
            }
        }
    }
}

impl DynamoStore {
    async fn read_record(&self, shop: &str, key_: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(shop_pk(shop), idem_sk(key_))))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::aws("dynamodb get_item (idempotency)", e))?;
        Ok(out.item)
    }
}
