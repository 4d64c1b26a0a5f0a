//! template.yaml, read as the deployed topology: which functions exist, with which binary,
//! timeout, environment and IAM actions, fed by which queues, routes and schedule.
//!
//! The deployed-topology mode of the local stack and the template tests read the topology from
//! here rather than repeating it, so a drift between template and code fails a test.

use std::collections::BTreeMap;
use std::path::Path;

use serde_yaml_ng::Value;

/// A value in the template: a literal, or one of the intrinsic functions the template uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Literal(String),
    /// `!Ref Name` (a parameter or a resource).
    Ref(String),
    /// `!GetAtt Resource.Attribute`.
    GetAtt(String, String),
    /// `!Sub "..."`.
    Sub(String),
    /// Anything else (`!If`, lists, maps).
    Other,
}

impl Expr {
    fn from_value(v: &Value) -> Expr {
        match v {
            Value::String(s) => Expr::Literal(s.clone()),
            Value::Number(n) => Expr::Literal(n.to_string()),
            Value::Bool(b) => Expr::Literal(b.to_string()),
            Value::Tagged(t) => match (t.tag.to_string().trim_start_matches('!'), &t.value) {
                ("Ref", Value::String(name)) => Expr::Ref(name.clone()),
                ("GetAtt", Value::String(path)) => match path.split_once('.') {
                    Some((res, attr)) => Expr::GetAtt(res.to_string(), attr.to_string()),
                    None => Expr::Other,
                },
                ("Sub", Value::String(s)) => Expr::Sub(s.clone()),
                _ => Expr::Other,
            },
            _ => Expr::Other,
        }
    }

    /// The logical id this expression points at (`!Ref X`, `!GetAtt X.Arn`).
    pub fn resource(&self) -> Option<&str> {
        match self {
            Expr::Ref(r) | Expr::GetAtt(r, _) => Some(r),
            _ => None,
        }
    }
}

/// What invokes a function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// An SQS event-source mapping.
    Sqs {
        queue: String,
        batch_size: u32,
        report_batch_item_failures: bool,
    },
    /// An HTTP API route.
    HttpApi { method: String, path: String },
    /// An EventBridge (Scheduler) schedule.
    Schedule { expression: Expr },
}

/// One `AWS::Serverless::Function`.
#[derive(Debug, Clone)]
pub struct Function {
    pub logical_id: String,
    /// The cargo binary (`Metadata.BuildProperties.Binary`).
    pub binary: String,
    pub timeout_secs: u64,
    pub memory_mb: u64,
    /// Globals' variables overlaid with the function's own.
    pub environment: BTreeMap<String, Expr>,
    pub triggers: Vec<Trigger>,
    /// Every IAM action its inline policies allow.
    pub actions: Vec<String>,
    /// `LoggingConfig.LogGroup`, the logical id of its log group.
    pub log_group: Option<String>,
}

/// One `AWS::SQS::Queue`.
#[derive(Debug, Clone)]
pub struct Queue {
    pub logical_id: String,
    /// Seconds; SQS's default (30) when unset.
    pub visibility_timeout_secs: u64,
    /// The dead-letter queue's logical id and `maxReceiveCount`.
    pub redrive: Option<(String, u32)>,
}

/// The parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    pub raw: Value,
}

/// Why the template could not be read as a topology.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("template.yaml is not YAML: {0}")]
    Yaml(#[from] serde_yaml_ng::Error),
    #[error("template.yaml: {0}")]
    Shape(String),
}

impl Template {
    /// The workspace's own template.yaml.
    pub fn load_workspace() -> Result<Template, TemplateError> {
        Template::load(&crate::workspace_root().join("template.yaml"))
    }

    pub fn load(path: &Path) -> Result<Template, TemplateError> {
        let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Template::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let raw: Value = serde_yaml_ng::from_str(text)?;
        if raw.get("Resources").and_then(Value::as_mapping).is_none() {
            return Err(TemplateError::Shape("no Resources".into()));
        }
        Ok(Template { raw })
    }

    /// `(logical id, resource)` of every resource of `kind`.
    pub fn resources_of<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = (&'a str, &'a Value)> {
        self.raw
            .get("Resources")
            .and_then(Value::as_mapping)
            .into_iter()
            .flat_map(|m| m.iter())
            .filter(move |(_, r)| r.get("Type").and_then(Value::as_str) == Some(kind))
            .filter_map(|(k, r)| Some((k.as_str()?, r)))
    }

    pub fn resource(&self, logical_id: &str) -> Option<&Value> {
        self.raw.get("Resources")?.get(logical_id)
    }

    /// Every function, with the Globals applied.
    pub fn functions(&self) -> Result<Vec<Function>, TemplateError> {
        let globals = self.raw.get("Globals").and_then(|g| g.get("Function"));
        let global = |key: &str| globals.and_then(|g| g.get(key));
        let mut out = Vec::new();
        for (id, res) in self.resources_of("AWS::Serverless::Function") {
            let props = res
                .get("Properties")
                .ok_or_else(|| TemplateError::Shape(format!("{id} has no Properties")))?;
            let binary = res
                .get("Metadata")
                .and_then(|m| m.get("BuildProperties"))
                .and_then(|b| b.get("Binary"))
                .and_then(Value::as_str)
                .ok_or_else(|| TemplateError::Shape(format!("{id} names no Binary")))?
                .to_string();
            let number = |key: &str| {
                props
                    .get(key)
                    .or_else(|| global(key))
                    .and_then(Value::as_u64)
            };
            let timeout_secs = number("Timeout").unwrap_or(3);
            let memory_mb = number("MemorySize").unwrap_or(128);
            let mut environment = BTreeMap::new();
            for vars in [global("Environment"), props.get("Environment")]
                .into_iter()
                .flatten()
                .filter_map(|e| e.get("Variables").and_then(Value::as_mapping))
            {
                for (k, v) in vars {
                    if let Some(k) = k.as_str() {
                        environment.insert(k.to_string(), Expr::from_value(v));
                    }
                }
            }
            let mut triggers = Vec::new();
            for (_, ev) in props
                .get("Events")
                .and_then(Value::as_mapping)
                .into_iter()
                .flatten()
            {
                let p = ev.get("Properties");
                let get = |k: &str| p.and_then(|p| p.get(k));
                match ev.get("Type").and_then(Value::as_str) {
                    Some("SQS") => triggers.push(Trigger::Sqs {
                        queue: get("Queue")
                            .map(Expr::from_value)
                            .and_then(|e| e.resource().map(str::to_string))
                            .ok_or_else(|| {
                                TemplateError::Shape(format!("{id}: SQS event without Queue"))
                            })?,
                        batch_size: get("BatchSize").and_then(Value::as_u64).unwrap_or(10) as u32,
                        report_batch_item_failures: get("FunctionResponseTypes")
                            .and_then(Value::as_sequence)
                            .is_some_and(|s| {
                                s.iter()
                                    .any(|t| t.as_str() == Some("ReportBatchItemFailures"))
                            }),
                    }),
                    Some("HttpApi") => triggers.push(Trigger::HttpApi {
                        method: get("Method")
                            .and_then(Value::as_str)
                            .unwrap_or("ANY")
                            .to_string(),
                        path: get("Path")
                            .and_then(Value::as_str)
                            .unwrap_or("$default")
                            .to_string(),
                    }),
                    Some("Schedule" | "ScheduleV2") => triggers.push(Trigger::Schedule {
                        expression: get("ScheduleExpression")
                            .map(Expr::from_value)
                            .unwrap_or(Expr::Other),
                    }),
                    _ => {}
                }
            }
            let mut actions = Vec::new();
            for policy in props
                .get("Policies")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
            {
                for st in policy
                    .get("Statement")
                    .and_then(Value::as_sequence)
                    .into_iter()
                    .flatten()
                {
                    match st.get("Action") {
                        Some(Value::String(a)) => actions.push(a.clone()),
                        Some(Value::Sequence(list)) => actions
                            .extend(list.iter().filter_map(Value::as_str).map(str::to_string)),
                        _ => {}
                    }
                }
            }
            let log_group = props
                .get("LoggingConfig")
                .and_then(|l| l.get("LogGroup"))
                .map(Expr::from_value)
                .and_then(|e| e.resource().map(str::to_string));
            out.push(Function {
                logical_id: id.to_string(),
                binary,
                timeout_secs,
                memory_mb,
                environment,
                triggers,
                actions,
                log_group,
            });
        }
        Ok(out)
    }

    /// The function built from `binary`.
    pub fn function(&self, binary: &str) -> Result<Function, TemplateError> {
        self.functions()?
            .into_iter()
            .find(|f| f.binary == binary)
            .ok_or_else(|| TemplateError::Shape(format!("no function with Binary {binary}")))
    }

    /// Every SQS queue.
    pub fn queues(&self) -> Vec<Queue> {
        self.resources_of("AWS::SQS::Queue")
            .map(|(id, res)| {
                let props = res.get("Properties");
                let get = |k: &str| props.and_then(|p| p.get(k));
                let redrive = get("RedrivePolicy").and_then(|r| {
                    let dlq = r
                        .get("deadLetterTargetArn")
                        .map(Expr::from_value)?
                        .resource()?
                        .to_string();
                    let max = r.get("maxReceiveCount").and_then(Value::as_u64)? as u32;
                    Some((dlq, max))
                });
                Queue {
                    logical_id: id.to_string(),
                    visibility_timeout_secs: get("VisibilityTimeout")
                        .and_then(Value::as_u64)
                        .unwrap_or(30),
                    redrive,
                }
            })
            .collect()
    }

    pub fn queue(&self, logical_id: &str) -> Option<Queue> {
        self.queues()
            .into_iter()
            .find(|q| q.logical_id == logical_id)
    }

    /// `(output name, value)` of every output.
    pub fn outputs(&self) -> Vec<(String, Expr)> {
        self.raw
            .get("Outputs")
            .and_then(Value::as_mapping)
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.as_str()?.to_string(), Expr::from_value(v.get("Value")?))))
            .collect()
    }

    /// Every parameter's name.
    pub fn parameter_names(&self) -> Vec<String> {
        self.raw
            .get("Parameters")
            .and_then(Value::as_mapping)
            .into_iter()
            .flatten()
            .filter_map(|(k, _)| k.as_str().map(str::to_string))
            .collect()
    }

    /// A parameter's default value.
    pub fn parameter_default(&self, name: &str) -> Option<String> {
        match self.raw.get("Parameters")?.get(name)?.get("Default")? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workspace_template_reads_as_five_functions() {
        let t = Template::load_workspace().expect("template.yaml parses");
        let mut bins: Vec<String> = t
            .functions()
            .unwrap()
            .into_iter()
            .map(|f| f.binary)
            .collect();
        bins.sort();
        assert_eq!(
            bins,
            [
                "api",
                "catalog-pull",
                "customer-pull",
                "dispatcher",
                "invoice-pull"
            ]
        );
    }
}
