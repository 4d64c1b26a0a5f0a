//! Metrics per run as CloudWatch embedded metric format (EMF): one JSON object per line on
//! stdout, which CloudWatch Logs turns into metrics in the `KiotVietFnbSync` namespace (the
//! template's dashboard and its `RunsAbandoned` alarm read them). No dimensions: thousands of
//! shops would be thousands of metrics; shop and run id ride along as searchable properties.

use mapping::api::{EntityReport, RunReport, RunState};
use serde_json::{Map, Value, json};

pub const NAMESPACE: &str = "KiotVietFnbSync";

/// An EMF document with `metrics` (name, value, unit) and `properties`.
pub fn document(metrics: &[(&str, f64, &str)], properties: Value) -> Value {
    let mut doc = match properties {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    doc.insert(
        "_aws".into(),
        json!({"Timestamp": timestamp, "CloudWatchMetrics": [{
            "Namespace": NAMESPACE,
            "Dimensions": [[]],
            "Metrics": metrics.iter().map(|(n, _, u)| json!({"Name": n, "Unit": u})).collect::<Vec<_>>(),
        }]}),
    );
    for (name, value, _) in metrics {
        doc.insert((*name).to_string(), json!(value));
    }
    Value::Object(doc)
}

/// A run that was found abandoned and reported failed.
pub fn abandoned(shop: &str, run_id: &str) -> Value {
    document(
        &[("RunsAbandoned", 1.0, "Count")],
        json!({"shop": shop, "run_id": run_id}),
    )
}

/// A run that ended: its state, records read, KiotViet GETs, Abaha calls, duration.
pub fn run_finished(shop: &str, report: &RunReport, state: RunState, seconds: f64) -> Value {
    let sum = |field: fn(&EntityReport) -> u64| -> f64 {
        report.entities.values().map(|e| field(e) as f64).sum()
    };
    document(
        &[
            ("RunsFinished", 1.0, "Count"),
            (
                "RunsFailed",
                f64::from(u8::from(state == RunState::Failed)),
                "Count",
            ),
            ("RecordsRead", sum(|e| e.read), "Count"),
            ("KiotVietGets", sum(|e| e.api_calls), "Count"),
            ("AbahaCalls", sum(|e| e.abaha_calls), "Count"),
            ("RunSeconds", seconds, "Seconds"),
        ],
        json!({"shop": shop, "run_id": report.run_id, "state": state}),
    )
}

/// Prints the document where CloudWatch reads it: only inside Lambda (tests and the local
/// stack stay quiet).
pub fn emit(doc: &Value) {
    if std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some() {
        println!("{doc}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_finished_run_then_its_emf_document_names_every_metric_it_carries() {
        let report: RunReport = serde_json::from_value(
            json!({"run_id": "run-1", "state": "succeeded", "entities": {
            "products": {"read": 120, "api_calls": 2, "abaha_calls": 2},
            "customers": {"read": 30, "api_calls": 1, "abaha_calls": 1}}}),
        )
        .unwrap();
        let doc = run_finished("s1", &report, RunState::Succeeded, 12.5);
        let declared: Vec<&str> = doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["Name"].as_str())
            .collect();
        for name in &declared {
            assert!(doc.get(*name).is_some(), "{name} declared but absent");
        }
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            json!(NAMESPACE)
        );
        assert_eq!(doc["RecordsRead"], json!(150.0));
        assert_eq!(doc["KiotVietGets"], json!(3.0));
        assert_eq!(doc["RunsFailed"], json!(0.0));
        assert_eq!(doc["shop"], json!("s1"));
    }
}
