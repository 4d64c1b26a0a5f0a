//! The drift guard: the OpenAPI documents in `docs/openapi/` hold the code to CONTRACTS.md.
//!
//! Every answer the end-to-end tests get from the service API is checked against the schema of its
//! route and status (an undocumented status is a failure too), every request the service accepted
//! against its request schema, and every item our service wrote into the Abaha sandbox against
//! the Abaha Sync API document. A field renamed in the code is then a missing required property
//! here, and the test that saw it fails with the route, the status and what is wrong.
//!
//! Schemas are JSON Schema 2020-12 (OpenAPI 3.1's dialect), checked with `boon` with format
//! assertions on, so times are RFC 3339 and dates `YYYY-MM-DD`. The documents are read at run time,
//! so editing them rebuilds nothing.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use boon::{Compiler, Draft, SchemaIndex, Schemas};
use serde_json::Value;

/// One OpenAPI 3.1 document, with its schemas compiled on first use.
pub struct Contract {
    name: &'static str,
    doc: Value,
    compiled: Mutex<Compiled>,
}

struct Compiled {
    schemas: Schemas,
    by_pointer: HashMap<String, SchemaIndex>,
}

/// `docs/openapi/service-api.yaml`, loaded once per test process.
pub fn service_api() -> &'static Contract {
    static DOC: OnceLock<Contract> = OnceLock::new();
    DOC.get_or_init(|| Contract::load("service-api.yaml").unwrap_or_else(|e| panic!("{e}")))
}

/// `docs/openapi/abaha-sync-api.yaml`, loaded once per test process.
pub fn abaha_sync_api() -> &'static Contract {
    static DOC: OnceLock<Contract> = OnceLock::new();
    DOC.get_or_init(|| Contract::load("abaha-sync-api.yaml").unwrap_or_else(|e| panic!("{e}")))
}

/// Where the documents live: `docs/openapi`, or `OPENAPI_DIR` (to try the guard on an edited copy).
pub fn openapi_dir() -> PathBuf {
    match std::env::var_os("OPENAPI_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi"),
    }
}

impl Contract {
    /// Reads and parses `docs/openapi/<file>`.
    pub fn load(file: &'static str) -> Result<Contract, String> {
        let path = openapi_dir().join(file);
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Contract::from_yaml(file, &text)
    }

    /// Parses a document given as YAML (or JSON, which is YAML too).
    pub fn from_yaml(name: &'static str, text: &str) -> Result<Contract, String> {
        let doc: Value =
            serde_yaml_ng::from_str(text).map_err(|e| format!("{name}: not YAML: {e}"))?;
        if doc
            .get("openapi")
            .and_then(Value::as_str)
            .is_none_or(|v| !v.starts_with("3.1"))
        {
            return Err(format!("{name}: not an OpenAPI 3.1 document"));
        }
        Ok(Contract {
            name,
            doc,
            compiled: Mutex::new(Compiled {
                schemas: Schemas::new(),
                by_pointer: HashMap::new(),
            }),
        })
    }

    fn url(name: &str) -> String {
        format!("urn:openapi:{name}")
    }

    /// The parsed document.
    pub fn doc(&self) -> &Value {
        &self.doc
    }

    /// The value at a JSON pointer, following OpenAPI `$ref`s (responses, headers, parameters)
    /// until a non-reference; answers the pointer where it was found.
    pub fn resolve(&self, pointer: &str) -> Result<(String, &Value), String> {
        let mut at = pointer.to_string();
        for _ in 0..16 {
            let v = self
                .doc
                .pointer(&at)
                .ok_or_else(|| format!("{}: nothing at {at}", self.name))?;
            match v.get("$ref").and_then(Value::as_str) {
                Some(r) => {
                    at = r
                        .strip_prefix('#')
                        .ok_or_else(|| {
                            format!("{}: only local $refs are used, not {r}", self.name)
                        })?
                        .to_string();
                }
                None => return Ok((at, v)),
            }
        }
        Err(format!("{}: $ref loop at {pointer}", self.name))
    }

    /// Validates `instance` against the schema at `pointer` (a JSON pointer into the document).
    pub fn validate(&self, pointer: &str, instance: &Value) -> Result<(), String> {
        let mut c = self.compiled.lock().unwrap_or_else(|e| e.into_inner());
        let c = &mut *c;
        let index = match c.by_pointer.get(pointer) {
            Some(i) => *i,
            None => {
                // boon's compiler is not Send; a fresh one per new location compiles into the
                // shared `Schemas`, which reuses what earlier compilations already hold.
                let mut compiler = Compiler::new();
                compiler.set_default_draft(Draft::V2020_12);
                compiler.enable_format_assertions();
                compiler
                    .add_resource(&Self::url(self.name), self.doc.clone())
                    .map_err(|e| format!("{}: {e}", self.name))?;
                let loc = format!("{}#{}", Self::url(self.name), fragment(pointer));
                let i = compiler.compile(&loc, &mut c.schemas).map_err(|e| {
                    format!(
                        "{}: the schema at {pointer} does not compile: {e:#}",
                        self.name
                    )
                })?;
                c.by_pointer.insert(pointer.to_string(), i);
                i
            }
        };
        c.schemas
            .validate(instance, index)
            .map_err(|e| format!("{}", e).replace(&Self::url(self.name), self.name))
    }

    /// Validates `instance` against `#/components/schemas/<name>`.
    pub fn validate_component(&self, name: &str, instance: &Value) -> Result<(), String> {
        self.validate(&format!("/components/schemas/{}", escape(name)), instance)
    }

    /// The document's path template that `path` (query string allowed) matches, if any.
    pub fn path_template(&self, path: &str) -> Option<String> {
        let path = path.split('?').next().unwrap_or(path);
        let segs: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        let paths = self.doc.get("paths")?.as_object()?;
        paths
            .keys()
            .filter(|t| {
                let tsegs: Vec<&str> = t.split('/').collect();
                tsegs.len() == segs.len()
                    && tsegs.iter().zip(&segs).all(|(t, s)| {
                        if t.starts_with('{') && t.ends_with('}') {
                            !s.is_empty()
                        } else {
                            t == s
                        }
                    })
            })
            // The template with the most literal segments wins.
            .max_by_key(|t| t.split('/').filter(|s| !s.starts_with('{')).count())
            .cloned()
    }

    /// Checks one request whose answer is `status` (requests are checked only when the service
    /// accepted them: the tests send bad input on purpose, and the answer to that is checked).
    pub fn check_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        status: u16,
    ) -> Result<(), String> {
        if !(200..300).contains(&status) {
            return Ok(());
        }
        let Some(op) = self.operation_pointer(method, path) else {
            return Err(format!(
                "{method} {path} answered {status}, but the document has no such operation"
            ));
        };
        let (_, op_value) = self.resolve(&op)?;
        let Some(_) = op_value.get("requestBody") else {
            return Ok(());
        };
        let (rb_at, rb) = self.resolve(&format!("{op}/requestBody"))?;
        let required = rb.get("required").and_then(Value::as_bool).unwrap_or(false);
        match body {
            None if required => Err(format!(
                "{method} {path}: accepted without the required body"
            )),
            None => Ok(()),
            Some(b) => self
                .validate(&format!("{rb_at}/content/application~1json/schema"), b)
                .map_err(|e| {
                    format!(
                        "{method} {path} request (answered {status}):\n{e}\nbody: {}",
                        excerpt(b)
                    )
                }),
        }
    }

    /// Checks one answer: the route and status are documented, the required headers are there,
    /// and the body validates against the schema of that status.
    pub fn check_answer(
        &self,
        method: &str,
        path: &str,
        status: u16,
        headers: &[(String, String)],
        body: &Value,
    ) -> Result<(), String> {
        let method = method.to_ascii_lowercase();
        let response_at = match self.path_template(path) {
            None => self.fallback_response("NotFound", "not_found", 404, status, &method, path)?,
            Some(t) => {
                let path_at = format!("/paths/{}", escape(&t));
                let documented = self.doc.pointer(&format!("{path_at}/{method}")).is_some();
                if !documented {
                    self.fallback_response(
                        "MethodNotAllowed",
                        "method_not_allowed",
                        405,
                        status,
                        &method,
                        path,
                    )?
                } else {
                    let responses = format!("{path_at}/{method}/responses");
                    let (responses_at, r) = self.resolve(&responses)?;
                    let exact = status.to_string();
                    let range = format!("{}XX", status / 100);
                    let key = [exact.as_str(), range.as_str(), "default"]
                        .into_iter()
                        .find(|k| r.get(*k).is_some())
                        .ok_or_else(|| {
                            format!(
                                "{} {method} {path} answered {status}, which {t} does not document (documented: {})\nbody: {}",
                                self.name,
                                r.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>().join(", ")).unwrap_or_default(),
                                excerpt(body)
                            )
                        })?;
                    format!("{responses_at}/{}", escape(key))
                }
            }
        };
        self.check_response_object(&response_at, &method, path, status, headers, body)
    }

    /// Both sides of one exchange; the request is checked only for an accepted (2xx) answer.
    pub fn check_exchange(
        &self,
        method: &str,
        path: &str,
        request: Option<&Value>,
        status: u16,
        headers: &[(String, String)],
        answer: &Value,
    ) -> Result<(), String> {
        self.check_answer(method, path, status, headers, answer)?;
        if self.path_template(path).is_some() && self.operation_pointer(method, path).is_some() {
            self.check_request(method, path, request, status)?;
        }
        Ok(())
    }

    /// The pointer to `/paths/<template>/<method>` of the operation `path` names, if documented.
    pub fn operation_pointer(&self, method: &str, path: &str) -> Option<String> {
        let t = self.path_template(path)?;
        let p = format!("/paths/{}/{}", escape(&t), method.to_ascii_lowercase());
        self.doc.pointer(&p).map(|_| p)
    }

    /// Every `(METHOD, path template)` the document has.
    pub fn operations(&self) -> Vec<(String, String)> {
        let mut out = vec![];
        for (t, item) in self
            .doc
            .get("paths")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            for m in ["get", "put", "post", "delete", "patch"] {
                if item.get(m).is_some() {
                    out.push((m.to_ascii_uppercase(), t.clone()));
                }
            }
        }
        out
    }

    /// An undocumented path or method: only the documented fallback answer (404 / 405) is right.
    fn fallback_response(
        &self,
        component: &str,
        code: &str,
        want: u16,
        status: u16,
        method: &str,
        path: &str,
    ) -> Result<String, String> {
        if status != want {
            return Err(format!(
                "{} {method} {path} is not documented, so it must answer {want} {code}, not {status}",
                self.name
            ));
        }
        let at = format!("/components/responses/{component}");
        self.doc.pointer(&at).map(|_| at).ok_or_else(|| {
            format!(
                "{}: no components.responses.{component} for {want} answers",
                self.name
            )
        })
    }

    fn check_response_object(
        &self,
        response: &str,
        method: &str,
        path: &str,
        status: u16,
        headers: &[(String, String)],
        body: &Value,
    ) -> Result<(), String> {
        let (at, resp) = self.resolve(response)?;
        let context = || {
            format!(
                "{} {} {path} → {status}",
                self.name,
                method.to_ascii_uppercase()
            )
        };
        for (name, _) in resp
            .get("headers")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let (h_at, h) = self.resolve(&format!("{at}/headers/{}", escape(name)))?;
            let value = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str());
            match value {
                None if h.get("required").and_then(Value::as_bool).unwrap_or(false) => {
                    return Err(format!(
                        "{}: the required header {name} is missing",
                        context()
                    ));
                }
                None => {}
                Some(v) => {
                    let typed = match h.pointer("/schema/type").and_then(Value::as_str) {
                        Some("integer") => v
                            .trim()
                            .parse::<i64>()
                            .map(Value::from)
                            .unwrap_or(Value::from(v)),
                        _ => Value::from(v),
                    };
                    self.validate(&format!("{h_at}/schema"), &typed)
                        .map_err(|e| format!("{}: header {name}: {v:?}\n{e}", context()))?;
                }
            }
        }
        match resp.pointer("/content/application~1json/schema") {
            Some(_) => self
                .validate(&format!("{at}/content/application~1json/schema"), body)
                .map_err(|e| format!("{}:\n{e}\nbody: {}", context(), excerpt(body))),
            None => Ok(()),
        }
    }
}

/// JSON pointer escaping of one reference token.
pub fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// A JSON pointer as a URI fragment: the characters a URL would refuse, percent-encoded.
fn fragment(pointer: &str) -> String {
    let mut out = String::with_capacity(pointer.len());
    for c in pointer.chars() {
        match c {
            'A'..='Z'
            | 'a'..='z'
            | '0'..='9'
            | '/'
            | '~'
            | '-'
            | '_'
            | '.'
            | ':'
            | '@'
            | '!'
            | '$'
            | '&'
            | '\''
            | '('
            | ')'
            | '*'
            | '+'
            | ','
            | ';'
            | '=' => out.push(c),
            other => {
                let mut buf = [0u8; 4];
                for b in other.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
        }
    }
    out
}

fn excerpt(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(600) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

/// Checks every item our service wrote into the Abaha sandbox for `shop` (each as last received)
/// against the request schema of its upsert route; answers how many items were checked.
pub fn check_abaha_writes(
    abaha: &sandbox::abaha::AbahaHandle,
    shop: &str,
) -> Result<usize, String> {
    let doc = abaha_sync_api();
    let mut checked = 0;
    for kind in sandbox::abaha::Kind::ALL {
        let items: Vec<Value> = abaha
            .stored(shop, kind)
            .into_iter()
            .map(|s| s.item)
            .collect();
        let path = format!("/v1/shops/{shop}/{}:upsert", kind.as_str());
        for chunk in items.chunks(100) {
            doc.check_request(
                "POST",
                &path,
                Some(&serde_json::json!({ "items": chunk })),
                200,
            )?;
            checked += chunk.len();
        }
    }
    Ok(checked)
}
