//! Runs that stopped without finishing are reported failed, never left "running".
//!
//! A run's lease (scope `run`) is renewed by its pulls at every checkpoint. When a job dies for
//! good — five failed deliveries and into the dead-letter queue, a function killed at its timeout
//! or failing at init — nothing renews it, and once it lapses the next trigger for the shop (the
//! schedule's tick, the Sync button) takes the lease. That moment is when the previous run is
//! known to be abandoned: its unfinished parts are failed with the cause, the run ends, and the
//! `RunsAbandoned` metric raises the template's alarm.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::runs::{self, Tally};
use crate::service::Service;

/// What the owner reads on each part the run left unfinished.
pub const ABANDONED: &str = "This run stopped without finishing: its job failed repeatedly (it is \
    in the dead-letter queue) or its function was stopped. Nothing written is lost; the next run \
    reads the rest again.";

/// Ends the shop's latest run as failed if it is still open, unless it is only waiting for the
/// KiotViet hourly budget. Call only while holding the shop's run lease (taken after the old
/// one lapsed). Answers the run id it closed.
pub async fn close_abandoned(
    svc: &Service,
    shop: &str,
    now: DateTime<Utc>,
) -> Result<Option<String>, store::StoreError> {
    let Some(report) = svc.store.latest_run(shop).await? else {
        return Ok(None);
    };
    let Some(unfinished) = unfinished_parts(&report, now) else {
        return Ok(None);
    };
    let Some(run_id) = report.get("run_id").and_then(Value::as_str) else {
        return Ok(None);
    };
    for part in &unfinished {
        // Its counts so far stay; only the state and the reason change.
        let mut section = match report.pointer(&format!("/entities/{part}")) {
            Some(Value::Object(m)) => m.clone(),
            _ => Tally::default()
                .to_value()
                .as_object()
                .cloned()
                .unwrap_or_default(),
        };
        section.insert("state".into(), json!("failed"));
        section.insert("message".into(), json!(ABANDONED));
        section.remove("waiting_until");
        svc.store
            .put_entity_report(shop, run_id, part, &Value::Object(section))
            .await?;
    }
    svc.store
        .append_errors(
            shop,
            run_id,
            &unfinished
                .iter()
                .map(|p| json!({"entity": p, "kiotviet_id": null, "message": ABANDONED}))
                .collect::<Vec<_>>(),
        )
        .await?;
    let states: Vec<String> = report
        .get("entities")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(name, e)| {
                    if unfinished.contains(name) {
                        "failed".to_string()
                    } else {
                        e.get("state")
                            .and_then(Value::as_str)
                            .unwrap_or("failed")
                            .to_string()
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let refs: Vec<&str> = states.iter().map(String::as_str).collect();
    let state = runs::run_state(&refs);
    svc.store
        .set_run_state(shop, run_id, state, Some(now))
        .await?;
    tracing::warn!(shop, run_id, parts = ?unfinished, state, "abandoned run reported failed");
    crate::metrics::emit(&crate::metrics::abandoned(shop, run_id));
    Ok(Some(run_id.to_string()))
}

/// The parts of an open run that will not finish by themselves; None when the run is over or
/// still legitimately waiting (a budget pause that has not yet passed).
pub fn unfinished_parts(report: &Value, now: DateTime<Utc>) -> Option<Vec<String>> {
    let state = report.get("state").and_then(Value::as_str).unwrap_or("");
    if matches!(state, "succeeded" | "partial" | "failed") {
        return None;
    }
    let entities = report.get("entities")?.as_object()?;
    let waiting = entities.values().any(|e| {
        e.get("state").and_then(Value::as_str) == Some("waiting")
            && e.get("waiting_until")
                .and_then(Value::as_str)
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .is_some_and(|t| t > now)
    });
    if waiting {
        return None;
    }
    let open: Vec<String> = entities
        .iter()
        .filter(|(_, e)| {
            !e.get("state")
                .and_then(Value::as_str)
                .is_some_and(runs::is_final)
        })
        .map(|(name, _)| name.clone())
        .collect();
    (!open.is_empty()).then_some(open)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-11-29T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn given_a_run_left_running_then_its_open_parts_are_the_ones_to_fail() {
        let report = json!({"run_id": "r", "state": "running", "entities": {
            "categories": {"state": "succeeded"}, "products": {"state": "running"},
            "invoices": {"state": "queued"}}});
        assert_eq!(
            unfinished_parts(&report, now()),
            Some(vec!["invoices".to_string(), "products".to_string()])
        );
    }

    #[test]
    fn given_a_finished_run_or_one_waiting_for_the_budget_then_nothing_is_abandoned() {
        let done = json!({"state": "partial", "entities": {"products": {"state": "running"}}});
        assert_eq!(unfinished_parts(&done, now()), None);
        let waiting = json!({"state": "running", "entities": {
            "customers": {"state": "waiting", "waiting_until": "2026-11-29T10:20:00+00:00"}}});
        assert_eq!(unfinished_parts(&waiting, now()), None);
        let overdue = json!({"state": "running", "entities": {
            "customers": {"state": "waiting", "waiting_until": "2026-11-29T09:00:00+00:00"}}});
        assert_eq!(
            unfinished_parts(&overdue, now()),
            Some(vec!["customers".to_string()])
        );
    }

    #[tokio::test]
    async fn given_a_run_whose_job_died_when_the_next_trigger_takes_the_shop_then_the_run_reads_failed()
     {
        // GIVEN a run whose products part was running when its job went to the dead-letter queue
        let svc = Service::in_memory(crate::Settings::default(), store::MemoryQueue::new());
        let initial = json!({"run_id": "run-1", "state": "running", "finished_at": null,
            "entities": {"categories": {"state": "succeeded"}, "products": {"state": "running", "read": 300}},
            "manual_actions": [], "errors": []});
        svc.store.create_run("s1", "run-1", &initial).await.unwrap();
        // WHEN the next trigger found the shop's run lease lapsed
        let closed = close_abandoned(&svc, "s1", now()).await.unwrap();
        // THEN the run is over, partial (categories did finish), with the cause on the part
        assert_eq!(closed.as_deref(), Some("run-1"));
        let report = svc.store.get_run("s1", "run-1").await.unwrap().unwrap();
        assert_eq!(report["state"], json!("partial"), "{report}");
        assert!(report["finished_at"].is_string(), "{report}");
        assert_eq!(report["entities"]["products"]["state"], json!("failed"));
        assert_eq!(report["entities"]["products"]["read"], json!(300));
        assert_eq!(report["errors"][0]["entity"], json!("products"), "{report}");
        // AND a second look changes nothing
        assert_eq!(close_abandoned(&svc, "s1", now()).await.unwrap(), None);
    }
}
