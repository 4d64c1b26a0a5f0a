//! A plain HTTP client for the simulators, as a test would hold one.
#![allow(dead_code)]

use reqwest::StatusCode;
use sandbox::kiotviet::{KiotVietSim, KvConfig, KvHandle};
use serde_json::Value;

pub const RETAILER: &str = "testfnbz15xyz";

pub struct Kv {
    pub sim: KvHandle,
    pub http: reqwest::Client,
    pub token: String,
}

pub async fn start(cfg: KvConfig) -> Kv {
    let sim = KiotVietSim::start(cfg).await.expect("simulator starts");
    let http = reqwest::Client::new();
    let token = token(&http, &sim.token_url(), "demo-client", "demo-secret")
        .await
        .1["access_token"]
        .as_str()
        .expect("a token")
        .to_string();
    Kv { sim, http, token }
}

pub async fn token(
    http: &reqwest::Client,
    url: &str,
    id: &str,
    secret: &str,
) -> (StatusCode, Value) {
    let form = format!(
        "scopes=PublicApi.Access.FNB&grant_type=client_credentials&client_id={id}&client_secret={secret}"
    );
    let resp = http
        .post(url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .expect("token call");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
}

impl Kv {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.sim.url(), path)
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Answer {
        let resp = req.send().await.expect("request sent");
        Answer {
            status: resp.status(),
            headers: resp.headers().clone(),
            text: resp.text().await.unwrap_or_default(),
        }
    }

    pub fn authed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        req.bearer_auth(&self.token).header("Retailer", RETAILER)
    }

    pub async fn get_raw(&self, path: &str) -> Answer {
        self.send(self.authed(self.http.get(self.url(path)))).await
    }

    /// GET that must succeed; the JSON body.
    pub async fn get(&self, path: &str) -> Value {
        let a = self.get_raw(path).await;
        assert_eq!(a.status, StatusCode::OK, "GET {path}: {}", a.text);
        a.json()
    }

    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        self.send(self.authed(self.http.post(self.url(path))).json(body))
            .await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Answer {
        self.send(self.authed(self.http.put(self.url(path))).json(body))
            .await
    }

    /// Every row of a list, page by page as a client would loop; also the raw pages.
    pub async fn all(&self, path: &str, page_size: usize) -> (Vec<Value>, Vec<Value>) {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut rows = Vec::new();
        let mut pages = Vec::new();
        loop {
            let page = self
                .get(&format!(
                    "{path}{sep}pageSize={page_size}&currentItem={}",
                    rows.len()
                ))
                .await;
            let data = page["data"].as_array().cloned().unwrap_or_default();
            let total = page["total"].as_u64().unwrap_or(0) as usize;
            pages.push(page);
            if data.is_empty() {
                break;
            }
            rows.extend(data);
            if rows.len() >= total {
                break;
            }
        }
        (rows, pages)
    }
}

/// Every JSON value in a tree, to look for nulls.
pub fn has_null(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.iter().any(has_null),
        Value::Object(o) => o.values().any(has_null),
        _ => false,
    }
}

/// All string values under keys ending in "Date" (createdDate, modifiedDate, purchaseDate, …).
pub fn dates(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| dates(x, out)),
        Value::Object(o) => {
            for (k, x) in o {
                if k.ends_with("Date")
                    && let Some(s) = x.as_str()
                {
                    out.push(s.to_string());
                }
                dates(x, out);
            }
        }
        _ => {}
    }
}
