//! [`RunStore`] on DynamoDB.
//!
//! Run item: `pk = "SHOP#{shop}"`, `sk = "RUN#{run_id}"`, `run_id` S, `base` M (the initial report
//! without its sections), `state` S and `finished_at` S (RFC 3339) once set, one attribute
//! `E#{entity}` per entity report, `manual_actions` L and `errors` L (at most [`RUN_LIST_CAP`]
//! each), `manual_actions_dropped` N and `errors_dropped` N (what the caps turned away),
//! `expires_at` N (TTL: 90 days after creation).
//! The latest run is the one with the greatest run id (run ids sort by time): one Query, newest
//! first, limit 1. There is no pointer item to write on every run (issue 16); `RUNLATEST` items
//! that older versions wrote are left alone.
//!
//! Functions of one run (catalog pull, customer pull …) update it at the same time, so every
//! update touches only its own attributes with UpdateItem; nothing reads, changes and writes back
//! the whole report.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use chrono::{DateTime, Duration, Utc};
use mapping::api::{Entity, EntityReport, ManualAction, RunError, RunReport, RunState};

use super::{
    DynamoStore, Item, from_av, is_expired, key, n, names, put_condition_failed, s, shop_pk,
    time_text, to_av, update_condition_failed, values,
};
use crate::StoreError;
use crate::ports::{RUN_LIST_CAP, RunEnd, RunStore};
use crate::report::{self, StoredRun};

/// How long run reports are kept.
pub const RUN_TTL: Duration = Duration::days(90);
const ENTITY_PREFIX: &str = "E#";
const RUN_PREFIX: &str = "RUN#";

fn run_sk(run_id: &str) -> String {
    format!("{RUN_PREFIX}{run_id}")
}

fn not_found(shop: &str, run_id: &str) -> StoreError {
    StoreError::NotFound {
        what: format!("run {run_id} of shop {shop}"),
    }
}

fn list_av<T: serde::Serialize>(values: &[T], what: &str) -> Result<AttributeValue, StoreError> {
    Ok(AttributeValue::L(
        values
            .iter()
            .map(|v| to_av(v, what))
            .collect::<Result<_, _>>()?,
    ))
}

fn list_len(item: &Item, name: &str) -> usize {
    match item.get(name) {
        Some(AttributeValue::L(l)) => l.len(),
        _ => 0,
    }
}

fn entity_attr(entity: Entity) -> String {
    format!("{ENTITY_PREFIX}{entity}")
}

/// The run item, section by section (see [`report::assemble`]). Entity attributes of an entity
/// this version does not know are left out, not an error: a report stays readable.
fn stored_run(mut item: Item) -> Result<StoredRun, StoreError> {
    let mut stored = StoredRun {
        base: match item.remove("base") {
            Some(b) => from_av(b, "run base")?,
            None => RunReport::default(),
        },
        ..StoredRun::default()
    };
    if let Some(AttributeValue::S(state)) = item.remove("state") {
        stored.state = Some(from_av(AttributeValue::S(state), "run state")?);
    }
    if let Some(AttributeValue::S(at)) = item.remove("finished_at") {
        stored.finished_at = Some(
            DateTime::parse_from_rfc3339(&at)
                .map_err(|e| StoreError::malformed("run finished_at", e))?
                .with_timezone(&Utc),
        );
    }
    let entity_names: Vec<String> = item
        .keys()
        .filter(|k| k.starts_with(ENTITY_PREFIX))
        .cloned()
        .collect();
    for name in entity_names {
        let Ok(entity) = name.trim_start_matches(ENTITY_PREFIX).parse::<Entity>() else {
            continue;
        };
        if let Some(av) = item.remove(&name) {
            stored
                .entities
                .insert(entity, from_av(av, "run entity report")?);
        }
    }
    if let Some(av) = item.remove("manual_actions") {
        stored.manual_actions = from_av(av, "run manual actions")?;
    }
    if let Some(av) = item.remove("errors") {
        stored.errors = from_av(av, "run errors")?;
    }
    let count = |name: &str| -> u64 {
        match item.get(name) {
            Some(AttributeValue::N(count)) => count.parse().unwrap_or(0),
            _ => 0,
        }
    };
    stored.manual_actions_dropped = count("manual_actions_dropped");
    stored.errors_dropped = count("errors_dropped");
    Ok(stored)
}

/// The report as the API shows it, from the run item.
fn assemble(item: Item) -> Result<RunReport, StoreError> {
    let run_id = match item.get("run_id") {
        Some(AttributeValue::S(run_id)) => run_id.clone(),
        _ => String::new(),
    };
    let stored = stored_run(item)?;
    let run_id = if run_id.is_empty() {
        stored.base.run_id.clone()
    } else {
        run_id
    };
    Ok(report::assemble(&run_id, stored))
}

impl DynamoStore {
    async fn read_run(&self, shop: &str, run_id: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(shop_pk(shop), run_sk(run_id))))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::aws("dynamodb get_item (run)", e))?;
        // Wall clock: run expiry is a 90-day retention horizon, not a decision of the sync.
        Ok(out.item.filter(|item| !is_expired(item, Utc::now())))
    }

    /// Sets attributes of an existing run: `set` is the SET clause over `#…`/`:…` placeholders.
    async fn update_run(
        &self,
        shop: &str,
        run_id: &str,
        op: &'static str,
        set: String,
        names_: Vec<(String, String)>,
        values_: Vec<(String, AttributeValue)>,
    ) -> Result<(), StoreError> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(shop_pk(shop), run_sk(run_id))))
            .update_expression(set)
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", "pk");
        for (k, v) in names_ {
            update = update.expression_attribute_names(k, v);
        }
        for (k, v) in values_ {
            update = update.expression_attribute_values(k, v);
        }
        match update.send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                update_condition_failed(op, e)?;
                Err(not_found(shop, run_id))
            }
        }
    }

    /// `list_append` that keeps the list at most [`RUN_LIST_CAP`] long and counts what it turns away.
    /// The cap is part of the condition, so concurrent appends cannot overshoot it together.
    async fn append_capped<T: serde::Serialize + Sync>(
        &self,
        shop: &str,
        run_id: &str,
        list: &str,
        dropped: &str,
        entries: &[T],
    ) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut fits = entries.len().min(RUN_LIST_CAP);
        for _ in 0..5 {
            let turned_away = entries.len() - fits;
            let mut expression = String::from("ADD #dropped :dropped");
            if fits > 0 {
                expression.push_str(" SET #list = list_append(#list, :new)");
            }
            let mut update = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key(shop_pk(shop), run_sk(run_id))))
                .update_expression(expression)
                .condition_expression("attribute_exists(#pk) AND size(#list) <= :max_before")
                .set_expression_attribute_names(Some(names([
                    ("#pk", "pk"),
                    ("#list", list),
                    ("#dropped", dropped),
                ])))
                .expression_attribute_values(":dropped", n(turned_away))
                .expression_attribute_values(":max_before", n(RUN_LIST_CAP - fits))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                );
            if fits > 0 {
                update = update.expression_attribute_values(
                    ":new",
                    list_av(&entries[..fits], "run report entry")?,
                );
            }
            let old = match update.send().await {
                Ok(_) => return Ok(()),
                Err(e) => update_condition_failed("dynamodb update_item (run list)", e)?,
            };
            let old = match old {
                Some(old) => old,
                None => self
                    .read_run(shop, run_id)
                    .await?
                    .ok_or_else(|| not_found(shop, run_id))?,
            };
            fits = RUN_LIST_CAP
                .saturating_sub(list_len(&old, list))
                .min(entries.len());
        }
        Err(StoreError::Unprocessed {
            op: "dynamodb update_item (run list)",
            left: entries.len(),
            attempts: 5,
        })
    }
}

#[async_trait]
impl RunStore for DynamoStore {
    async fn create_run(
        &self,
        shop: &str,
        run_id: &str,
        initial: &RunReport,
    ) -> Result<bool, StoreError> {
        let stored = report::split_initial(initial);
        let mut item = key(shop_pk(shop), run_sk(run_id));
        item.insert("run_id".into(), s(run_id));
        item.insert("base".into(), to_av(&stored.base, "initial run report")?);
        for (entity, report) in &stored.entities {
            item.insert(entity_attr(*entity), to_av(report, "run entity report")?);
        }
        item.insert(
            "manual_actions".into(),
            list_av(&stored.manual_actions, "run report entry")?,
        );
        item.insert(
            "manual_actions_dropped".into(),
            n(stored.manual_actions_dropped),
        );
        item.insert(
            "errors".into(),
            list_av(&stored.errors, "run report entry")?,
        );
        item.insert("errors_dropped".into(), n(stored.errors_dropped));
        item.insert("expires_at".into(), n((Utc::now() + RUN_TTL).timestamp()));

        let created = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .set_expression_attribute_names(Some(names([("#pk", "pk")])))
            .send()
            .await;
        if let Err(e) = created {
            put_condition_failed("dynamodb put_item (run)", e)?;
            return Ok(false);
        }
        Ok(true)
    }

    async fn put_entity_report(
        &self,
        shop: &str,
        run_id: &str,
        entity: Entity,
        report: &EntityReport,
    ) -> Result<(), StoreError> {
        self.update_run(
            shop,
            run_id,
            "dynamodb update_item (run entity)",
            "SET #entity = :report".into(),
            vec![("#entity".into(), entity_attr(entity))],
            vec![(":report".into(), to_av(report, "run entity report")?)],
        )
        .await
    }

    async fn put_entity_reports(
        &self,
        shop: &str,
        run_id: &str,
        reports: &[(Entity, EntityReport)],
        end: Option<&RunEnd>,
    ) -> Result<RunReport, StoreError> {
        if reports.is_empty() {
            return self
                .get_run(shop, run_id)
                .await?
                .ok_or_else(|| not_found(shop, run_id));
        }
        let update = |end: Option<&RunEnd>| -> Result<_, StoreError> {
            let mut set = Vec::with_capacity(reports.len() + 2);
            let mut condition = String::from("attribute_exists(#pk)");
            let mut update = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key(shop_pk(shop), run_sk(run_id))))
                .expression_attribute_names("#pk", "pk")
                .return_values(ReturnValue::AllNew);
            for (i, (entity, report)) in reports.iter().enumerate() {
                set.push(format!("#e{i} = :r{i}"));
                update = update
                    .expression_attribute_names(format!("#e{i}"), entity_attr(*entity))
                    .expression_attribute_values(
                        format!(":r{i}"),
                        to_av(report, "run entity report")?,
                    );
            }
            if let Some(end) = end {
                set.push("#state = :state, #finished = :finished".into());
                update = update
                    .expression_attribute_names("#state", "state")
                    .expression_attribute_names("#finished", "finished_at")
                    .expression_attribute_values(":state", s(end.state.as_str()))
                    .expression_attribute_values(":finished", s(time_text(end.finished_at)));
                for (i, (entity, state)) in end.others.iter().enumerate() {
                    condition.push_str(&format!(" AND #o{i}.#state = :o{i}"));
                    update = update
                        .expression_attribute_names(format!("#o{i}"), entity_attr(*entity))
                        .expression_attribute_values(format!(":o{i}"), s(state.as_str()));
                }
            }
            Ok(update
                .update_expression(format!("SET {}", set.join(", ")))
                .condition_expression(condition))
        };
        match update(end)?.send().await {
            Ok(out) => return assemble(out.attributes.unwrap_or_default()),
            Err(e) => {
                update_condition_failed("dynamodb update_item (run entities)", e)?;
            }
        }
        // The condition failed: the run is gone, or (with `end`) another part moved since it was
        // read. Then the reports go alone, and the caller ends the run from the answer.
        if end.is_none() {
            return Err(not_found(shop, run_id));
        }
        match update(None)?.send().await {
            Ok(out) => assemble(out.attributes.unwrap_or_default()),
            Err(e) => {
                update_condition_failed("dynamodb update_item (run entities)", e)?;
                Err(not_found(shop, run_id))
            }
        }
    }

    async fn append_manual_actions(
        &self,
        shop: &str,
        run_id: &str,
        actions: &[ManualAction],
    ) -> Result<(), StoreError> {
        self.append_capped(
            shop,
            run_id,
            "manual_actions",
            "manual_actions_dropped",
            actions,
        )
        .await
    }

    async fn append_errors(
        &self,
        shop: &str,
        run_id: &str,
        errors: &[RunError],
    ) -> Result<(), StoreError> {
        self.append_capped(shop, run_id, "errors", "errors_dropped", errors)
            .await
    }

    async fn set_run_state(
        &self,
        shop: &str,
        run_id: &str,
        state: RunState,
        finished_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let mut set = String::from("SET #state = :state");
        let mut names_ = vec![("#state".to_owned(), "state".to_owned())];
        let mut values_ = vec![(":state".to_owned(), s(state.as_str()))];
        if let Some(at) = finished_at {
            set.push_str(", #finished = :finished");
            names_.push(("#finished".into(), "finished_at".into()));
            values_.push((":finished".into(), s(time_text(at))));
        }
        self.update_run(
            shop,
            run_id,
            "dynamodb update_item (run state)",
            set,
            names_,
            values_,
        )
        .await
    }

    async fn get_run(&self, shop: &str, run_id: &str) -> Result<Option<RunReport>, StoreError> {
        self.read_run(shop, run_id).await?.map(assemble).transpose()
    }

    async fn latest_run(&self, shop: &str) -> Result<Option<RunReport>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :run)")
            .set_expression_attribute_names(Some(names([("#pk", "pk"), ("#sk", "sk")])))
            .set_expression_attribute_values(Some(values([
                (":pk", s(shop_pk(shop))),
                (":run", s(RUN_PREFIX)),
            ])))
            .scan_index_forward(false)
            .limit(1)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::aws("dynamodb query (latest run)", e))?;
        // Wall clock, as in `read_run`: past its retention, the newest run is gone, and so is
        // every older one.
        out.items
            .unwrap_or_default()
            .into_iter()
            .next()
            .filter(|item| !is_expired(item, Utc::now()))
            .map(assemble)
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use mapping::api::{PartState, Trigger};
    use serde_json::json;

    use super::*;

    fn av(v: serde_json::Value) -> AttributeValue {
        to_av(&v, "test").unwrap()
    }

    /// Runs written before the typed report (base as a JSON map with `+00:00` times, entity
    /// sections as maps, an entity this version does not know) still read back.
    #[test]
    fn a_run_item_of_the_previous_version_reads_back_as_a_typed_report() {
        let mut item = key(shop_pk("s1"), run_sk("run-1"));
        item.insert("run_id".into(), s("run-1"));
        item.insert(
            "base".into(),
            av(
                json!({"run_id": "run-1", "state": "queued", "trigger": "schedule", "full": false,
                      "started_at": "2026-11-29T02:00:00+00:00", "finished_at": null}),
            ),
        );
        item.insert("state".into(), s("partial"));
        item.insert("finished_at".into(), s("2026-11-29T02:00:05.5Z"));
        item.insert(
            "E#products".into(),
            av(
                json!({"state": "waiting", "created": 1, "updated": 0, "unchanged": 0, "failed": 0,
                      "skipped": {"no_phone": 2}, "api_calls": 3, "removed_in_kiotviet": 0,
                      "abaha_calls": 1, "read": 4, "waiting_until": "2026-11-29T03:00:00+00:00"}),
            ),
        );
        item.insert("E#vouchers".into(), av(json!({"state": "queued"})));
        item.insert(
            "manual_actions".into(),
            av(
                json!([{"kind": "cancel_order_in_abaha", "kiotviet_id": 7, "abaha_id": "A-7",
                       "message": "cancel by hand"}]),
            ),
        );
        item.insert("errors".into(), av(json!([])));
        item.insert("errors_dropped".into(), n(3));
        let report = assemble(item).unwrap();
        assert_eq!(report.run_id, "run-1");
        assert_eq!(report.state, RunState::Partial);
        assert_eq!(report.trigger, Some(Trigger::Schedule));
        assert_eq!(report.duration_ms(), Some(5_500));
        let products = &report.entities[&Entity::Products];
        assert_eq!(products.state, PartState::Waiting);
        assert_eq!((products.read, products.skipped["no_phone"]), (4, 2));
        assert!(products.waiting_until.is_some());
        assert_eq!(report.entities.len(), 1, "unknown entities are left out");
        assert_eq!(report.manual_actions[0].abaha_id.as_deref(), Some("A-7"));
        assert_eq!(report.errors_dropped, 3);
    }
}
