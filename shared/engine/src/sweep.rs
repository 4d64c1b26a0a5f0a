//! Runs that stopped without finishing are reported failed, never left "running".
//!
//! A run's lease (scope `run`) is renewed by its pulls at every checkpoint. When a job dies for
//! good — five failed deliveries and into the dead-letter queue, a function killed at its timeout
//! or failing at init — nothing renews it, and once it lapses the next trigger for the shop (the
//! schedule's tick, the Sync button) takes the lease. That moment is when the previous run is
//! known to be abandoned: its unfinished parts are failed with the cause, the run ends, and the
//! `RunsAbandoned` metric raises the template's alarm.

use chrono::{DateTime, Utc};
use mapping::api::{PartState, RunError, RunReport, RunState};

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
    let run_id = report.run_id.as_str();
    if run_id.is_empty() {
        return Ok(None);
    }
    for part in &unfinished {
        // Its counts so far stay; only the state and the reason change.
        let mut section = report.entities.get(part).cloned().unwrap_or_default();
        section.state = PartState::Failed;
        section.message = Some(ABANDONED.to_string());
        section.waiting_until = None;
        svc.store
            .put_entity_report(shop, run_id, *part, &section)
            .await?;
    }
    svc.store
        .append_errors(
            shop,
            run_id,
            &unfinished
                .iter()
                .map(|p| RunError::new(p, None, ABANDONED))
                .collect::<Vec<_>>(),
        )
        .await?;
    let states = report.entities.iter().map(|(entity, e)| {
        if unfinished.contains(entity) {
            PartState::Failed
        } else {
            e.state
        }
    });
    let state = RunState::of_parts(states).unwrap_or(RunState::Failed);
    svc.store
        .set_run_state(shop, run_id, state, Some(now))
        .await?;
    tracing::warn!(shop, run_id, parts = ?unfinished, %state, "abandoned run reported failed");
    crate::metrics::emit(&crate::metrics::abandoned(shop, run_id));
    Ok(Some(run_id.to_string()))
}

/// What the owner reads on each part a resume picked up again.
pub const RESUMED: &str = "Interrupted: its pull stopped (no lease renewal for a while); resumed \
    from the last checkpoint.";
/// Resumes of one run after which it is left to lapse and be reported failed: a job that dies
/// every time must end, not be resumed for ever.
const MAX_RESUMES: usize = 2;

/// Crash recovery in seconds, not a visibility timeout: when a trigger finds the shop's run
/// lease held by `run_id` but not renewed for `stall_after`, and none of the run's open parts is
/// held by a live delivery (their leases lapse 15 s after their heartbeat stops), the pull that
/// ran it died. Its parts are queued again under the same run id, resuming from their
/// checkpoints; a late original delivery is fenced (it finds the part held, or ended). The run's
/// report says so. Answers whether it resumed.
pub async fn resume_if_stalled(
    svc: &Service,
    conn: &store::Connection,
    run_id: &str,
    lease_until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool, store::StoreError> {
    use crate::model::{Entity, SyncJob};
    use crate::queues::EntityQueue;
    use store::LeaseAnswer;
    let shop = conn.shop_id.as_str();
    let ttl =
        chrono::Duration::from_std(svc.settings.lease_ttl).unwrap_or(chrono::Duration::minutes(15));
    let stall = chrono::Duration::from_std(svc.settings.stall_after)
        .unwrap_or(chrono::Duration::minutes(1));
    if lease_until - ttl + stall > now {
        return Ok(false);
    }
    let Some(report) = svc.store.get_run(shop, run_id).await? else {
        return Ok(false);
    };
    let Some(open) = unfinished_parts(&report, now) else {
        return Ok(false);
    };
    let resumes = report
        .errors
        .iter()
        .filter(|e| e.message == RESUMED)
        .count();
    if resumes >= MAX_RESUMES * open.len().max(1) {
        return Ok(false);
    }
    // A probe of each open part, as a delivery of this run would take it (a real delivery of the
    // run meeting the probe waits; one of another run is not involved).
    let probe = format!("{run_id}/probe");
    for part in &open {
        match svc
            .store
            .acquire_lease(
                shop,
                part.as_str(),
                &probe,
                now + chrono::Duration::seconds(5),
                now,
            )
            .await?
        {
            LeaseAnswer::Acquired => {
                svc.store.release_lease(shop, part.as_str(), &probe).await?;
            }
            LeaseAnswer::HeldBy { .. } => return Ok(false),
        }
    }
    let parts: Vec<Entity> = Entity::ALL
        .into_iter()
        .filter(|e| open.contains(e))
        .collect();
    let full = report.full;
    let catalog: Vec<Entity> = parts
        .iter()
        .copied()
        .filter(|e| matches!(e, Entity::Categories | Entity::Products))
        .collect();
    let mut jobs: Vec<(Entity, SyncJob)> = Vec::new();
    if !catalog.is_empty() {
        let mut job = SyncJob::new(shop, run_id, full);
        job.entities = catalog.clone();
        // Invoices wait for the products of the same run (R-INV-2).
        if parts.contains(&Entity::Invoices) {
            job.then.push(Entity::Invoices);
        }
        jobs.push((catalog[0], job));
    } else if parts.contains(&Entity::Invoices) {
        let mut job = SyncJob::new(shop, run_id, full);
        job.entities = vec![Entity::Invoices];
        jobs.push((Entity::Invoices, job));
    }
    if parts.contains(&Entity::Customers) {
        let mut job = SyncJob::new(shop, run_id, full);
        job.entities = vec![Entity::Customers];
        jobs.push((Entity::Customers, job));
    }
    for (first, job) in &jobs {
        svc.queue
            .send(first.queue(&svc.settings.queues), &job.to_value(), None)
            .await?;
    }
    svc.store
        .renew_lease(shop, crate::model::RUN_SCOPE, run_id, now + ttl)
        .await?;
    svc.store
        .append_errors(
            shop,
            run_id,
            &open
                .iter()
                .map(|p| RunError::new(p, None, RESUMED))
                .collect::<Vec<_>>(),
        )
        .await?;
    tracing::warn!(shop, run_id, parts = ?open, "interrupted run resumed from its checkpoints");
    Ok(true)
}

/// The parts of an open run that will not finish by themselves; None when the run is over or
/// still legitimately waiting (a budget pause that has not yet passed).
pub fn unfinished_parts(
    report: &RunReport,
    now: DateTime<Utc>,
) -> Option<Vec<mapping::api::Entity>> {
    if report.state.is_finished() {
        return None;
    }
    let waiting = report
        .entities
        .values()
        .any(|e| e.state == PartState::Waiting && e.waiting_until.is_some_and(|t| t > now));
    if waiting {
        return None;
    }
    let open: Vec<mapping::api::Entity> = report
        .entities
        .iter()
        .filter(|(_, e)| !e.state.is_final())
        .map(|(entity, _)| *entity)
        .collect();
    (!open.is_empty()).then_some(open)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use mapping::api::Entity as E;

    fn report(v: Value) -> RunReport {
        serde_json::from_value(v).unwrap()
    }

    fn now() -> DateTime<Utc> {
        "2026-11-29T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn given_a_run_left_running_then_its_open_parts_are_the_ones_to_fail() {
        let report = report(json!({"run_id": "r", "state": "running", "entities": {
            "categories": {"state": "succeeded"}, "products": {"state": "running"},
            "invoices": {"state": "queued"}}}));
        assert_eq!(
            unfinished_parts(&report, now()),
            Some(vec![E::Products, E::Invoices])
        );
    }

    #[test]
    fn given_a_finished_run_or_one_waiting_for_the_budget_then_nothing_is_abandoned() {
        let done =
            report(json!({"state": "partial", "entities": {"products": {"state": "running"}}}));
        assert_eq!(unfinished_parts(&done, now()), None);
        let waiting = report(json!({"state": "running", "entities": {
            "customers": {"state": "waiting", "waiting_until": "2026-11-29T10:20:00+00:00"}}}));
        assert_eq!(unfinished_parts(&waiting, now()), None);
        let overdue = report(json!({"state": "running", "entities": {
            "customers": {"state": "waiting", "waiting_until": "2026-11-29T09:00:00+00:00"}}}));
        assert_eq!(unfinished_parts(&overdue, now()), Some(vec![E::Customers]));
    }

    fn connection() -> store::Connection {
        Service::test_connection("s1")
    }

    #[tokio::test]
    async fn given_a_run_not_renewed_for_a_minute_with_no_part_held_then_it_is_resumed_once_fenced()
    {
        use store::JobQueue;
        // GIVEN run-1 whose customer pull died: its run lease last renewed 61 s ago
        let queue = store::MemoryQueue::new();
        let mut settings = crate::Settings::default();
        settings.queues.customers = queue.ensure_queue("customers", "customers-dlq", 5).url;
        let svc = Service::in_memory(settings, queue.clone());
        let initial = json!({"run_id": "run-1", "state": "running", "full": false,
            "entities": {"customers": {"state": "running", "read": 100}},
            "manual_actions": [], "errors": []});
        svc.store
            .create_run("s1", "run-1", &report(initial))
            .await
            .unwrap();
        let ttl = chrono::Duration::from_std(svc.settings.lease_ttl).unwrap();
        let until = now() + ttl - chrono::Duration::seconds(61);
        // WHEN a part is still held by a live delivery THEN nothing is resumed
        svc.store
            .acquire_lease(
                "s1",
                "customers",
                "run-1/live",
                now() + chrono::Duration::seconds(10),
                now(),
            )
            .await
            .unwrap();
        assert!(
            !resume_if_stalled(&svc, &connection(), "run-1", until, now())
                .await
                .unwrap()
        );
        svc.store
            .release_lease("s1", "customers", "run-1/live")
            .await
            .unwrap();
        // WHEN renewed 30 s ago THEN nothing either (it may be between pages)
        let recent = now() + ttl - chrono::Duration::seconds(30);
        assert!(
            !resume_if_stalled(&svc, &connection(), "run-1", recent, now())
                .await
                .unwrap()
        );
        // WHEN nobody holds the part THEN the customers job is queued again for the same run
        assert!(
            resume_if_stalled(&svc, &connection(), "run-1", until, now())
                .await
                .unwrap()
        );
        let url = svc.settings.queues.customers.clone();
        let jobs = queue.receive(&url, 10, 0, 30).await.unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].body["run_id"], json!("run-1"));
        assert_eq!(jobs[0].body["entities"], json!(["customers"]));
        // AND the report says so
        let report =
            serde_json::to_value(svc.store.get_run("s1", "run-1").await.unwrap().unwrap()).unwrap();
        assert_eq!(report["errors"][0]["message"], json!(RESUMED), "{report}");
    }

    #[tokio::test]
    async fn given_a_run_whose_job_died_when_the_next_trigger_takes_the_shop_then_the_run_reads_failed()
     {
        // GIVEN a run whose products part was running when its job went to the dead-letter queue
        let svc = Service::in_memory(crate::Settings::default(), store::MemoryQueue::new());
        let initial = json!({"run_id": "run-1", "state": "running", "finished_at": null,
            "entities": {"categories": {"state": "succeeded"}, "products": {"state": "running", "read": 300}},
            "manual_actions": [], "errors": []});
        svc.store
            .create_run("s1", "run-1", &report(initial))
            .await
            .unwrap();
        // WHEN the next trigger found the shop's run lease lapsed
        let closed = close_abandoned(&svc, "s1", now()).await.unwrap();
        // THEN the run is over, partial (categories did finish), with the cause on the part
        assert_eq!(closed.as_deref(), Some("run-1"));
        let report =
            serde_json::to_value(svc.store.get_run("s1", "run-1").await.unwrap().unwrap()).unwrap();
        assert_eq!(report["state"], json!("partial"), "{report}");
        assert!(report["finished_at"].is_string(), "{report}");
        assert_eq!(report["entities"]["products"]["state"], json!("failed"));
        assert_eq!(report["entities"]["products"]["read"], json!(300));
        assert_eq!(report["errors"][0]["entity"], json!("products"), "{report}");
        // AND a second look changes nothing
        assert_eq!(close_abandoned(&svc, "s1", now()).await.unwrap(), None);
    }
}
