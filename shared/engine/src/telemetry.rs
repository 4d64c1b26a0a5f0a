//! Structured JSON logs (one object per line) for every function. Shop, entity and run id travel as
//! fields of the events and spans that concern them; secrets are never recorded anywhere.

/// JSON logs to stdout, filtered by `RUST_LOG` (default `info`). Safe to call twice.
pub fn init_json() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .without_time()
        .try_init();
}
