//! template.yaml holds what AWS runs (issue 15): each finding about the deployed topology is a
//! rule here, read from the template itself, so a later edit cannot quietly undo it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed test

use local_stack::template::{Expr, Template, Trigger};
use serde_yaml_ng::Value;

fn template() -> Template {
    Template::load_workspace().expect("template.yaml parses")
}

#[test]
fn given_an_sqs_event_source_then_its_queue_visibility_timeout_is_at_least_six_times_the_function_timeout()
 {
    let t = template();
    let mut checked = 0;
    for f in t.functions().unwrap() {
        for trigger in &f.triggers {
            if let Trigger::Sqs { queue, .. } = trigger {
                let q = t
                    .queue(queue)
                    .expect("the event's queue is in the template");
                assert!(
                    q.visibility_timeout_secs >= 6 * f.timeout_secs,
                    "{queue}: VisibilityTimeout {} s < 6 × {} Timeout {} s: a job would be delivered again while its first invocation still runs",
                    q.visibility_timeout_secs,
                    f.logical_id,
                    f.timeout_secs
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 3, "three pull functions read a queue each");
}

#[test]
fn given_every_job_queue_then_it_redrives_to_a_dead_letter_queue_named_in_the_outputs() {
    let t = template();
    let outputs = t.outputs();
    let mut dlqs = 0;
    for q in t.queues() {
        let Some((dlq, max)) = q.redrive else {
            continue;
        };
        dlqs += 1;
        assert_eq!(
            max, 5,
            "{}: maxReceiveCount (engine's MAX_FAILED_TRIES is 4)",
            q.logical_id
        );
        assert!(
            outputs
                .iter()
                .any(|(_, v)| v.resource() == Some(dlq.as_str())),
            "dead-letter queue {dlq} is not in Outputs: an operator cannot find it"
        );
    }
    assert_eq!(dlqs, 3);
}

#[test]
fn given_the_kms_key_that_seals_every_secret_then_it_is_retained_like_the_table() {
    let t = template();
    for (id, res) in t
        .resources_of("AWS::KMS::Key")
        .chain(t.resources_of("AWS::DynamoDB::Table"))
    {
        for policy in ["DeletionPolicy", "UpdateReplacePolicy"] {
            assert_eq!(
                res.get(policy).and_then(Value::as_str),
                Some("Retain"),
                "{id}: {policy} must be Retain"
            );
        }
    }
}

#[test]
fn given_the_dispatcher_whose_failure_path_releases_the_run_lease_then_it_may_delete_items() {
    let f = template().function("dispatcher").unwrap();
    for action in [
        "dynamodb:Query",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
    ] {
        assert!(
            f.actions.iter().any(|a| a == action),
            "dispatcher lacks {action}"
        );
    }
    // Least privilege: no secrets for the function that never opens one.
    assert!(
        !f.actions
            .iter()
            .any(|a| a.starts_with("kms:") || a.starts_with("ssm:")),
        "dispatcher: {:?}",
        f.actions
    );
}

#[test]
fn given_any_function_then_kiotviet_token_url_is_not_set_so_the_second_token_host_stays_the_fallback()
 {
    let t = template();
    for f in t.functions().unwrap() {
        assert!(
            !f.environment.contains_key("KIOTVIET_TOKEN_URL"),
            "{} sets KIOTVIET_TOKEN_URL, which switches off the token-host fallback",
            f.logical_id
        );
    }
    // The same, for the variable as a whole default: the config the functions build.
    let cfg = kiotviet::KiotVietConfig::from_lookup(|_| None);
    assert!(cfg.fallback_token_url.is_some());
}

#[test]
fn given_every_function_then_it_logs_to_its_own_log_group_with_a_retention() {
    let t = template();
    for f in t.functions().unwrap() {
        let lg = f
            .log_group
            .as_deref()
            .unwrap_or_else(|| panic!("{}: no LoggingConfig.LogGroup", f.logical_id));
        let res = t.resource(lg).expect("log group resource");
        assert_eq!(
            res.get("Type").and_then(Value::as_str),
            Some("AWS::Logs::LogGroup")
        );
        assert!(
            res.get("Properties")
                .and_then(|p| p.get("RetentionInDays"))
                .is_some(),
            "{lg}: no RetentionInDays (logs kept for ever)"
        );
    }
}

/// `(namespace, metric, dimension value)` of every alarm that notifies someone.
fn alarms(t: &Template) -> Vec<(String, String, Option<Expr>)> {
    t.resources_of("AWS::CloudWatch::Alarm")
        .map(|(id, res)| {
            let p = res.get("Properties").expect("alarm properties");
            assert!(
                p.get("AlarmActions")
                    .and_then(Value::as_sequence)
                    .is_some_and(|a| !a.is_empty()),
                "{id}: an alarm that tells no one"
            );
            let s = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let dim = p
                .get("Dimensions")
                .and_then(Value::as_sequence)
                .and_then(|d| d.first())
                .and_then(|d| d.get("Value"))
                .map(|v| match v {
                    Value::Tagged(tv) => {
                        match (tv.tag.to_string().trim_start_matches('!'), &tv.value) {
                            ("GetAtt", Value::String(p)) => {
                                let (r, a) = p.split_once('.').unwrap_or((p, ""));
                                Expr::GetAtt(r.into(), a.into())
                            }
                            ("Ref", Value::String(r)) => Expr::Ref(r.clone()),
                            _ => Expr::Other,
                        }
                    }
                    _ => Expr::Other,
                });
            (s("Namespace"), s("MetricName"), dim)
        })
        .collect()
}

#[test]
fn given_every_job_queue_then_a_dead_letter_or_a_job_waiting_too_long_raises_an_alarm() {
    let t = template();
    let alarms = alarms(&t);
    for q in t.queues() {
        let Some((dlq, _)) = q.redrive else { continue };
        assert!(
            alarms.iter().any(|(ns, m, d)| ns == "AWS/SQS"
                && m == "ApproximateNumberOfMessagesVisible"
                && d.as_ref().and_then(Expr::resource) == Some(dlq.as_str())),
            "no alarm on {dlq}'s depth"
        );
        // AND jobs waiting long for a pull (concurrency reached, the function failing) are seen
        assert!(
            alarms.iter().any(|(ns, m, d)| ns == "AWS/SQS"
                && m == "ApproximateAgeOfOldestMessage"
                && d.as_ref().and_then(Expr::resource) == Some(q.logical_id.as_str())),
            "no alarm on the age of {}'s oldest job",
            q.logical_id
        );
    }
}

#[test]
fn given_every_function_then_its_errors_and_throttles_raise_alarms() {
    let t = template();
    let alarms = alarms(&t);
    for f in t.functions().unwrap() {
        for metric in ["Errors", "Throttles"] {
            assert!(
                alarms.iter().any(|(ns, m, d)| ns == "AWS/Lambda"
                    && m == metric
                    && d.as_ref().and_then(Expr::resource) == Some(f.logical_id.as_str())),
                "no {metric} alarm on {}",
                f.logical_id
            );
        }
    }
    assert!(
        alarms
            .iter()
            .any(|(ns, m, _)| ns == "KiotVietFnbSync" && m == "RunsAbandoned"),
        "no alarm on runs that stopped without finishing"
    );
}

#[test]
fn given_the_dashboard_then_its_body_is_json_once_substituted() {
    let t = template();
    let (_, dash) = t
        .resources_of("AWS::CloudWatch::Dashboard")
        .next()
        .expect("a dashboard");
    let body = dash
        .get("Properties")
        .and_then(|p| p.get("DashboardBody"))
        .expect("DashboardBody");
    let Value::Tagged(tv) = body else {
        panic!("DashboardBody is a !Sub")
    };
    let text = tv.value.as_str().expect("a string");
    // Every ${...} becomes a plain name, as CloudFormation would substitute it.
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let end = rest[i..].find('}').expect("closed ${") + i;
        out.push_str("name");
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    let json: serde_json::Value = serde_json::from_str(&out).expect("dashboard body is JSON");
    assert!(json["widgets"].as_array().is_some_and(|w| !w.is_empty()));
}

#[test]
fn given_the_release_profile_then_a_panic_unwinds_so_one_job_fails_not_the_batch() {
    let cargo = std::fs::read_to_string(local_stack::workspace_root().join("Cargo.toml"))
        .expect("Cargo.toml");
    let release = cargo
        .split("[profile.release]")
        .nth(1)
        .map(|s| s.split("\n[").next().unwrap_or(s))
        .unwrap_or("");
    assert!(
        !release
            .lines()
            .any(|l| l.trim().starts_with("panic") && l.contains("abort")),
        "panic = \"abort\" in [profile.release]: one panic would kill every job of a batch"
    );
}

fn events_dir() -> std::path::PathBuf {
    local_stack::workspace_root().join("infra/events")
}

fn read_json(name: &str) -> serde_json::Value {
    let path = events_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn given_the_sam_local_env_file_then_it_sets_every_variable_the_template_gives_each_function() {
    // `sam local invoke --env-vars infra/events/env.json`: "Parameters" applies to every function.
    let env = read_json("env.json");
    for f in template().functions().unwrap() {
        let own = &env[f.logical_id.as_str()];
        assert!(own.is_object(), "env.json has no {}", f.logical_id);
        for name in f.environment.keys() {
            assert!(
                own.get(name).is_some() || env["Parameters"].get(name).is_some(),
                "env.json lacks {name} for {}",
                f.logical_id
            );
        }
    }
}

#[test]
fn given_the_sam_local_events_then_each_pull_event_carries_a_job_of_its_own_queue() {
    let t = template();
    for f in t.functions().unwrap() {
        let Some(Trigger::Sqs { queue, .. }) = f
            .triggers
            .iter()
            .find(|tr| matches!(tr, Trigger::Sqs { .. }))
        else {
            continue;
        };
        let event = read_json(&format!("{}-job.json", f.binary));
        let records = event["Records"].as_array().expect("Records");
        assert!(!records.is_empty());
        for r in records {
            assert!(
                r["eventSourceARN"]
                    .as_str()
                    .is_some_and(|arn| arn.ends_with(&format!(":{queue}"))),
                "{}: {r}",
                f.binary
            );
            let body = r["body"].as_str().expect("body is a string");
            let job: engine::SyncJob = serde_json::from_str(body).expect("body is a SyncJob");
            let expected: Vec<engine::Entity> = match f.binary.as_str() {
                "catalog-pull" => vec![engine::Entity::Categories, engine::Entity::Products],
                "customer-pull" => vec![engine::Entity::Customers],
                _ => vec![engine::Entity::Invoices],
            };
            assert_eq!(job.entities, expected, "{}", f.binary);
        }
    }
    // The schedule's event is JSON the dispatcher accepts (it takes any payload).
    assert!(read_json("dispatcher-schedule.json").is_object());
}

#[test]
fn given_the_service_api_document_then_api_gateway_routes_exactly_its_operations_to_the_api_function()
 {
    // A route documented but not in the template is 404 on AWS (and in the deployed topology);
    // one in the template but not documented is an operation nobody promised.
    let path = local_stack::workspace_root().join("docs/openapi/service-api.yaml");
    let doc: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&path).expect("service-api.yaml"))
            .expect("YAML");
    let mut documented: Vec<(String, String)> = Vec::new();
    for (p, item) in doc.get("paths").and_then(Value::as_mapping).expect("paths") {
        for (m, _) in item.as_mapping().expect("path item") {
            let m = m.as_str().unwrap_or_default();
            if ["get", "put", "post", "delete", "patch"].contains(&m) {
                documented.push((m.to_uppercase(), p.as_str().unwrap_or_default().to_string()));
            }
        }
    }
    let mut routed: Vec<(String, String)> = template()
        .function("api")
        .unwrap()
        .triggers
        .into_iter()
        .filter_map(|t| match t {
            Trigger::HttpApi { method, path } => Some((method, path)),
            _ => None,
        })
        .collect();
    documented.sort();
    routed.sort();
    assert_eq!(routed, documented);
}
