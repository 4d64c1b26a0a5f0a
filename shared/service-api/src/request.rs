//! A request and an answer of the service API, framework-neutral: the HTTP hosts (the Lambda and
//! the local stack, both through [`crate::router`]) convert to and from these.

use std::collections::HashMap;

use serde_json::Value;

use crate::error::ApiError;

/// An HTTP request as the router sees it. Header names are lower-case.
#[derive(Debug, Clone, Default)]
pub struct ApiRequest {
    pub method: String,
    pub path: String,
    pub query: HashMap<String, String>,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl ApiRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// An HTTP answer: status, extra headers, JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl ApiResponse {
    pub fn json(status: u16, body: Value) -> Self {
        ApiResponse {
            status,
            headers: vec![],
            body,
        }
    }
}

impl From<ApiError> for ApiResponse {
    fn from(e: ApiError) -> Self {
        let mut headers = vec![];
        if let Some(secs) = e.retry_after {
            headers.push(("retry-after".to_string(), secs.to_string()));
        }
        ApiResponse {
            status: e.status,
            headers,
            body: e.body(),
        }
    }
}
