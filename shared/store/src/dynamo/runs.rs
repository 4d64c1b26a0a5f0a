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
use serde_json::{Map, Value};

use super::{
    DynamoStore, Item, from_av, is_expired, key, n, names, put_condition_failed, s, shop_pk,
    time_text, to_av, update_condition_failed, values,
};
use crate::StoreError;
use crate::ports::{RUN_LIST_CAP, RunEnd, RunStore};

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

fn list_av(values: &[Value], what: &str) -> Result<AttributeValue, StoreError> {
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

/// The report as the API shows it, from the run item.
fn assemble(mut item: Item) -> Result<Value, StoreError> {
    let mut report = match item
        .remove("base")
        .map(|b| from_av(b, "run base"))
        .transpose()?
    {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    };
    if let Some(AttributeValue::S(run_id)) = item.remove("run_id") {
        report.insert("run_id".into(), Value::String(run_id));
    }
    for field in ["state", "finished_at"] {
        if let Some(AttributeValue::S(v)) = item.remove(field) {
            report.insert(field.into(), Value::String(v));
        }
    }
    let mut entities = Map::new();
    let entity_names: Vec<String> = item
        .keys()
        .filter(|k| k.starts_with(ENTITY_PREFIX))
        .cloned()
        .collect();
    for name in entity_names {
        if let Some(av) = item.remove(&name) {
            let entity = name.trim_start_matches(ENTITY_PREFIX).to_owned();
            entities.insert(entity, from_av(av, "run entity report")?);
        }
    }
    report.insert("entities".into(), Value::Object(entities));
    for (list, dropped) in [
        ("manual_actions", "manual_actions_dropped"),
        ("errors", "errors_dropped"),
    ] {
        let entries = match item.remove(list) {
            Some(av) => from_av(av, "run report list")?,
            None => Value::Array(Vec::new()),
        };
        report.insert(list.into(), entries);
        let count: u64 = match item.get(dropped) {
            Some(AttributeValue::N(count)) => count.parse().unwrap_or(0),
            _ => 0,
        };
        if count > 0 {
            report.insert(dropped.into(), Value::from(count));
        }
    }
    Ok(Value::Object(report))
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
    async fn append_capped(
        &self,
        shop: &str,
        run_id: &str,
        list: &str,
        dropped: &str,
        entries: &[Value],
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
        initial: &Value,
    ) -> Result<bool, StoreError> {
        let Value::Object(initial) = initial else {
            return Err(StoreError::malformed(
                "initial run report",
                "not a JSON object",
            ));
        };
        let mut base = initial.clone();
        let entities = base.remove("entities");
        let take_list = |v: Option<Value>| match v {
            Some(Value::Array(entries)) => entries,
            _ => Vec::new(),
        };
        let manual_actions = take_list(base.remove("manual_actions"));
        let errors = take_list(base.remove("errors"));

        let mut item = key(shop_pk(shop), run_sk(run_id));
        item.insert("run_id".into(), s(run_id));
        item.insert(
            "base".into(),
            to_av(&Value::Object(base), "initial run report")?,
        );
        if let Some(Value::Object(entities)) = entities {
            for (entity, report) in entities {
                item.insert(
                    format!("{ENTITY_PREFIX}{entity}"),
                    to_av(&report, "run entity report")?,
                );
            }
        }
        for (list, dropped, entries) in [
            ("manual_actions", "manual_actions_dropped", &manual_actions),
            ("errors", "errors_dropped", &errors),
        ] {
            let kept = entries.len().min(RUN_LIST_CAP);
            item.insert(list.into(), list_av(&entries[..kept], "run report entry")?);
            item.insert(dropped.into(), n(entries.len() - kept));
        }
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
        entity: &str,
        report: &Value,
    ) -> Result<(), StoreError> {
        self.update_run(
            shop,
            run_id,
            "dynamodb update_item (run entity)",
            "SET #entity = :report".into(),
            vec![("#entity".into(), format!("{ENTITY_PREFIX}{entity}"))],
            vec![(":report".into(), to_av(report, "run entity report")?)],
        )
        .await
    }

    async fn put_entity_reports(
        &self,
        shop: &str,
        run_id: &str,
        reports: &[(String, Value)],
        end: Option<&RunEnd>,
    ) -> Result<Value, StoreError> {
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
                    .expression_attribute_names(
                        format!("#e{i}"),
                        format!("{ENTITY_PREFIX}{entity}"),
                    )
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
                    .expression_attribute_values(":state", s(&end.state))
                    .expression_attribute_values(":finished", s(time_text(end.finished_at)));
                for (i, (entity, state)) in end.others.iter().enumerate() {
                    condition.push_str(&format!(" AND #o{i}.#state = :o{i}"));
                    update = update
                        .expression_attribute_names(
                            format!("#o{i}"),
                            format!("{ENTITY_PREFIX}{entity}"),
                        )
                        .expression_attribute_values(format!(":o{i}"), s(state));
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
        actions: &[Value],
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
        errors: &[Value],
    ) -> Result<(), StoreError> {
        self.append_capped(shop, run_id, "errors", "errors_dropped", errors)
            .await
    }

    async fn set_run_state(
        &self,
        shop: &str,
        run_id: &str,
        state: &str,
        finished_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let mut set = String::from("SET #state = :state");
        let mut names_ = vec![("#state".to_owned(), "state".to_owned())];
        let mut values_ = vec![(":state".to_owned(), s(state))];
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

    async fn get_run(&self, shop: &str, run_id: &str) -> Result<Option<Value>, StoreError> {
        self.read_run(shop, run_id).await?.map(assemble).transpose()
    }

    async fn latest_run(&self, shop: &str) -> Result<Option<Value>, StoreError> {
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
