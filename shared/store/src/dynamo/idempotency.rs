//! [`IdempotencyStore`] on DynamoDB, after Powertools for AWS Lambda's persistence layer, with
//! fencing.
//!
//! Item: `pk = "SHOP#{shop}"`, `sk = "IDEM#{key}"`, `status` S (`INPROGRESS` | `RELEASED` |
//! `COMPLETED`), `holder` S (the claiming call's token) and `in_progress_until` S (RFC 3339) +
//! `in_progress_until_ns` N while in progress, `attempt` (native JSON) from `record_attempt` until
//! the record completes or the attempt is forgotten, `answer` (the JSON answer to replay) once
//! completed, `expires_at` N (TTL: a week after the in-progress expiry; 400 days after
//! completion).
//!
//! A claim is one conditional UpdateItem: it keeps `attempt` (so a takeover learns of an attempt
//! that may have reached the other side) and returns the old item either way — on success
//! (`ReturnValues = ALL_OLD`) for the attempt, on failure
//! (`ReturnValuesOnConditionCheckFailure = ALL_OLD`) for the replay — so no second read is needed.
//! Every later write is conditional on `holder`: a call that lost its claim writes nothing.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{ReturnValue, ReturnValuesOnConditionCheckFailure};
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use super::{
    DynamoStore, Item, delete_condition_failed, from_av, get_n, get_s, is_expired, key, n, names,
    s, shop_pk, time_from_ns, time_ns, time_text, to_av, update_condition_failed, values,
};
use crate::StoreError;
use crate::model::Claim;
use crate::ports::IdempotencyStore;

const IN_PROGRESS: &str = "INPROGRESS";
const RELEASED: &str = "RELEASED";
const COMPLETED: &str = "COMPLETED";

/// How long a completed answer is replayed.
pub const COMPLETED_TTL: Duration = Duration::days(400);
/// How long an unfinished record (and the attempt it may hold) lingers after its in-progress
/// expiry before TTL removes it. Long enough for a retry days later to still look before acting.
pub const UNFINISHED_LINGER: Duration = Duration::days(7);

fn idem_sk(key: &str) -> String {
    format!("IDEM#{key}")
}

/// What an existing, unexpired record means for a new claim by `holder`.
fn answer_from(item: Item, holder: &str) -> Result<Claim, StoreError> {
    let status = get_s(&item, "status", "idempotency item")?;
    // The SDK retries a request whose answer was lost: our own claim comes back as the "old"
    // item of a failed condition, and is still ours.
    if status == IN_PROGRESS
        && item
            .get("holder")
            .and_then(|h| h.as_s().ok())
            .is_some_and(|h| h == holder)
    {
        return Ok(Claim::Claimed {
            attempt: attempt_of(Some(item))?,
        });
    }
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

/// The attempt an old item (as returned by a successful claim) carries. An expired item's
/// attempt is still handed over: looking once more is the safe side.
fn attempt_of(old: Option<Item>) -> Result<Option<Value>, StoreError> {
    old.and_then(|mut item| item.remove("attempt"))
        .map(|av| from_av(av, "idempotency attempt"))
        .transpose()
}

#[async_trait]
impl IdempotencyStore for DynamoStore {
    async fn claim(
        &self,
        shop: &str,
        key_: &str,
        holder: &str,
        in_progress_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        // A lost race whose failure carries no old item (the record vanished in between) is retried.
        for _ in 0..3 {
            let result = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key(shop_pk(shop), idem_sk(key_))))
                .update_expression(
                    "SET #status = :in_progress, #holder = :holder, #until = :until, #until_ns = :until_ns, #exp = :exp REMOVE #answer",
                )
                .condition_expression(
                    "attribute_not_exists(#pk) OR #exp <= :now_s OR #status = :released OR (#status = :in_progress AND #until_ns <= :now_ns)",
                )
                .set_expression_attribute_names(Some(names([
                    ("#pk", "pk"),
                    ("#exp", "expires_at"),
                    ("#status", "status"),
                    ("#holder", "holder"),
                    ("#until", "in_progress_until"),
                    ("#until_ns", "in_progress_until_ns"),
                    ("#answer", "answer"),
                ])))
                .set_expression_attribute_values(Some(values([
                    (":now_s", n(now.timestamp())),
                    (":now_ns", n(time_ns(now))),
                    (":in_progress", s(IN_PROGRESS)),
                    (":released", s(RELEASED)),
                    (":holder", s(holder)),
                    (":until", s(time_text(in_progress_until))),
                    (":until_ns", n(time_ns(in_progress_until))),
                    (":exp", n((in_progress_until + UNFINISHED_LINGER).timestamp())),
                ])))
                .return_values(ReturnValue::AllOld)
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .send()
                .await;
            let old = match result {
                Ok(out) => {
                    return Ok(Claim::Claimed {
                        attempt: attempt_of(out.attributes)?,
                    });
                }
                Err(e) => update_condition_failed("dynamodb update_item (idempotency claim)", e)?,
            };
            let old = match old {
                Some(old) => Some(old),
                None => self.read_record(shop, key_).await?,
            };
            match old {
                Some(item) if !is_expired(&item, now) => return answer_from(item, holder),
                _ => continue,
            }
        }
        Err(StoreError::Unprocessed {
            op: "dynamodb update_item (idempotency claim)",
            left: 1,
            attempts: 3,
        })
    }

    async fn record_attempt(
        &self,
        shop: &str,
        key_: &str,
        holder: &str,
        attempt: &Value,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(shop_pk(shop), idem_sk(key_))))
            .update_expression("SET #attempt = :attempt")
            .condition_expression("#status = :in_progress AND #holder = :holder")
            .set_expression_attribute_names(Some(names([
                ("#attempt", "attempt"),
                ("#status", "status"),
                ("#holder", "holder"),
            ])))
            .set_expression_attribute_values(Some(values([
                (":attempt", to_av(attempt, "idempotency attempt")?),
                (":in_progress", s(IN_PROGRESS)),
                (":holder", s(holder)),
            ])))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) => update_condition_failed("dynamodb update_item (idempotency attempt)", e)
                .map(|_| false),
        }
    }

    async fn complete(
        &self,
        shop: &str,
        key_: &str,
        holder: &str,
        answer: &Value,
    ) -> Result<bool, StoreError> {
        // Wall clock on purpose: this is only the replay horizon and the TTL clean-up time.
        let expires_at = (Utc::now() + COMPLETED_TTL).timestamp();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(shop_pk(shop), idem_sk(key_))))
            .update_expression(
                "SET #status = :completed, #answer = :answer, #exp = :exp REMOVE #attempt, #holder, #until, #until_ns",
            )
            .condition_expression("#status = :in_progress AND #holder = :holder")
            .set_expression_attribute_names(Some(names([
                ("#status", "status"),
                ("#answer", "answer"),
                ("#exp", "expires_at"),
                ("#attempt", "attempt"),
                ("#holder", "holder"),
                ("#until", "in_progress_until"),
                ("#until_ns", "in_progress_until_ns"),
            ])))
            .set_expression_attribute_values(Some(values([
                (":completed", s(COMPLETED)),
                (":answer", to_av(answer, "idempotency answer")?),
                (":exp", n(expires_at)),
                (":in_progress", s(IN_PROGRESS)),
                (":holder", s(holder)),
            ])))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) => update_condition_failed("dynamodb update_item (idempotency complete)", e)
                .map(|_| false),
        }
    }

    async fn release(
        &self,
        shop: &str,
        key_: &str,
        holder: &str,
        forget_attempt: bool,
    ) -> Result<bool, StoreError> {
        let fenced = names([("#status", "status"), ("#holder", "holder")]);
        let fence = values([(":in_progress", s(IN_PROGRESS)), (":holder", s(holder))]);
        let condition = "#status = :in_progress AND #holder = :holder";
        let item_key = key(shop_pk(shop), idem_sk(key_));
        if forget_attempt {
            let result = self
                .client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(item_key))
                .condition_expression(condition)
                .set_expression_attribute_names(Some(fenced))
                .set_expression_attribute_values(Some(fence))
                .send()
                .await;
            return match result {
                Ok(_) => Ok(true),
                Err(e) => delete_condition_failed("dynamodb delete_item (idempotency release)", e)
                    .map(|_| false),
            };
        }
        // The attempt (if any) stays for the next claim; the record is claimable at once.
        let mut names = fenced;
        names.insert("#until_ns".into(), "in_progress_until_ns".into());
        let mut values = fence;
        values.insert(":released".into(), s(RELEASED));
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(item_key))
            .update_expression("SET #status = :released REMOVE #holder, #until_ns")
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) => update_condition_failed("dynamodb update_item (idempotency release)", e)
                .map(|_| false),
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
