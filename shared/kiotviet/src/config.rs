//! Where KiotViet lives and how patiently we talk to it (CONTRACTS §3, reference §2–3).

use std::time::Duration;

use retry::RetryPolicy;

/// The FnB API host (reference §3; `public.kiotapi.com` is the retail host and is wrong for FnB).
pub const DEFAULT_API_URL: &str = "https://publicfnb.kiotapi.com";
/// The token host current FnB integrations use (reference §2, host 1).
pub const DEFAULT_TOKEN_URL: &str = "https://api.fnb.kiotviet.vn/identity/connect/token";
/// The retail identity host, also accepted with the FnB scope by older FnB code (reference §2, host 2).
pub const DEFAULT_FALLBACK_TOKEN_URL: &str = "https://id.kiotviet.vn/connect/token";
/// KiotViet pages hold at most 100 records.
pub const MAX_PAGE_SIZE: u32 = 100;

#[derive(Debug, Clone, PartialEq)]
pub struct KiotVietConfig {
    /// Base URL without a trailing slash, e.g. `https://publicfnb.kiotapi.com`.
    pub api_url: String,
    pub token_url: String,
    /// Tried when `token_url` answers 400/401 (reference §2: which host a shop's credentials
    /// belong to is not settled).
    pub fallback_token_url: Option<String>,
    pub retry: RetryPolicy,
    /// Per HTTP request (connect + answer), shortened further to the time left before a deadline.
    pub request_timeout: Duration,
    /// `pageSize` of list reads (1..=100).
    pub page_size: u32,
}

impl Default for KiotVietConfig {
    fn default() -> Self {
        KiotVietConfig {
            api_url: DEFAULT_API_URL.to_owned(),
            token_url: DEFAULT_TOKEN_URL.to_owned(),
            fallback_token_url: Some(DEFAULT_FALLBACK_TOKEN_URL.to_owned()),
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(30),
            page_size: MAX_PAGE_SIZE,
        }
    }
}

impl KiotVietConfig {
    /// A configuration for a test server or sandbox: the given URLs, no token fallback.
    pub fn for_urls(api_url: impl Into<String>, token_url: impl Into<String>) -> Self {
        KiotVietConfig {
            api_url: trim_slash(api_url.into()),
            token_url: token_url.into(),
            fallback_token_url: None,
            ..KiotVietConfig::default()
        }
    }

    /// Reads `KIOTVIET_API_URL`, `KIOTVIET_TOKEN_URL`, `KIOTVIET_TOKEN_FALLBACK_URL` and
    /// `KIOTVIET_REQUEST_TIMEOUT_SECS`.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`Self::from_env`] over any lookup (tests pass a map: setting the process environment is
    /// unsafe in edition 2024).
    ///
    /// When `KIOTVIET_TOKEN_URL` is set explicitly it is the only token URL, unless
    /// `KIOTVIET_TOKEN_FALLBACK_URL` is also set: someone who points us at one host (a sandbox,
    /// another team's fake) does not want a request to leave for the real KiotViet.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let defaults = KiotVietConfig::default();
        let explicit_fallback = get("KIOTVIET_TOKEN_FALLBACK_URL");
        let (token_url, fallback_token_url) = match get("KIOTVIET_TOKEN_URL") {
            Some(url) => (url, explicit_fallback),
            None => (
                defaults.token_url.clone(),
                explicit_fallback.or(defaults.fallback_token_url.clone()),
            ),
        };
        let request_timeout = get("KIOTVIET_REQUEST_TIMEOUT_SECS")
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|secs| *secs > 0)
            .map_or(defaults.request_timeout, Duration::from_secs);
        KiotVietConfig {
            api_url: trim_slash(get("KIOTVIET_API_URL").unwrap_or(defaults.api_url)),
            token_url,
            fallback_token_url,
            request_timeout,
            ..defaults
        }
    }

    /// `page_size` within KiotViet's 1..=100.
    pub(crate) fn effective_page_size(&self) -> u32 {
        self.page_size.clamp(1, MAX_PAGE_SIZE)
    }
}

fn trim_slash(mut url: String) -> String {
    while url.ends_with('/') {
        url.pop();
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> KiotVietConfig {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        KiotVietConfig::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_use_the_fnb_hosts_with_the_token_fallback() {
        let cfg = config(&[]);
        assert_eq!(cfg.api_url, "https://publicfnb.kiotapi.com");
        assert_eq!(cfg.token_url, DEFAULT_TOKEN_URL);
        assert_eq!(
            cfg.fallback_token_url.as_deref(),
            Some(DEFAULT_FALLBACK_TOKEN_URL)
        );
        assert_eq!(cfg.page_size, 100);
    }

    #[test]
    fn an_explicit_token_url_has_no_fallback_unless_one_is_given() {
        let cfg = config(&[
            ("KIOTVIET_API_URL", "http://127.0.0.1:9100/"),
            ("KIOTVIET_TOKEN_URL", "http://127.0.0.1:9100/connect/token"),
        ]);
        assert_eq!(cfg.api_url, "http://127.0.0.1:9100");
        assert_eq!(cfg.token_url, "http://127.0.0.1:9100/connect/token");
        assert_eq!(cfg.fallback_token_url, None);

        let cfg = config(&[
            ("KIOTVIET_TOKEN_URL", "http://a/token"),
            ("KIOTVIET_TOKEN_FALLBACK_URL", "http://b/token"),
            ("KIOTVIET_REQUEST_TIMEOUT_SECS", "5"),
        ]);
        assert_eq!(cfg.fallback_token_url.as_deref(), Some("http://b/token"));
        assert_eq!(cfg.request_timeout, Duration::from_secs(5));
    }

    #[test]
    fn blank_or_bad_values_fall_back_to_defaults() {
        let cfg = config(&[
            ("KIOTVIET_API_URL", "  "),
            ("KIOTVIET_REQUEST_TIMEOUT_SECS", "soon"),
        ]);
        assert_eq!(cfg.api_url, DEFAULT_API_URL);
        assert_eq!(cfg.request_timeout, Duration::from_secs(30));
    }
}
