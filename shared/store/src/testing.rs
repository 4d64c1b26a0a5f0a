//! Helpers for tests that talk to a local moto server (DynamoDB, KMS, SQS): its endpoint comes
//! from `MOTO_ENDPOINT` (e.g. `http://127.0.0.1:5599`). Without it such a test fails and says how
//! to run it (`make test` starts moto); `SKIP_MOTO_TESTS=1` skips them instead, each saying so.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;
use rand::RngCore;

/// The environment variable that names the moto endpoint for tests.
pub const MOTO_ENDPOINT_VAR: &str = "MOTO_ENDPOINT";

/// The moto endpoint from `MOTO_ENDPOINT`, if set and not empty.
pub fn moto_endpoint() -> Option<String> {
    std::env::var(MOTO_ENDPOINT_VAR)
        .ok()
        .filter(|v| !v.trim().is_empty())
}

/// The moto endpoint a test needs; `None` (the test skips, and says so) only when the caller asked
/// for that with `SKIP_MOTO_TESTS=1`. A plain `cargo test` without moto fails loudly instead of
/// passing without having tested anything.
pub fn moto_or_skip(test: &str) -> Option<String> {
    if let Some(endpoint) = moto_endpoint() {
        return Some(endpoint);
    }
    if std::env::var("SKIP_MOTO_TESTS").is_ok_and(|v| v == "1") {
        eprintln!("SKIPPED {test}: MOTO_ENDPOINT is not set and SKIP_MOTO_TESTS=1");
        return None;
    }
    panic!(
        "{test} needs moto: run `make test` (it starts moto), or `infra/moto.sh start` and export \
         MOTO_ENDPOINT with the URL it prints; SKIP_MOTO_TESTS=1 skips these tests instead"
    )
}

/// AWS configuration for a moto server at `endpoint`: fixed test credentials, ap-southeast-1,
/// nothing read from the environment or instance metadata.
pub async fn moto_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("ap-southeast-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "moto"))
        .load()
        .await
}

/// `prefix` plus a random suffix, so parallel tests never share a table, key alias or queue.
pub fn unique_name(prefix: &str) -> String {
    let mut bytes = [0u8; 6];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}-{}", hex::encode(bytes))
}
