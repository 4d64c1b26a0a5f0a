//! `sandbox`: serves the KiotViet FnB simulator and the Abaha Sync API sandbox until SIGINT/SIGTERM.
//!
//! Prints one line per server (its URL first) on stdout, so scripts can read them.

use std::process::ExitCode;

use sandbox::abaha::{AbahaConfig, AbahaSim};
use sandbox::kiotviet::{DataSize, KiotVietSim, KvConfig};

const USAGE: &str = "\
usage: sandbox [options]
  --kiotviet-port N     KiotViet FnB simulator port (env SANDBOX_KIOTVIET_PORT, default 9101; 0 = any)
  --abaha-port N        Abaha Sync API sandbox port (env SANDBOX_ABAHA_PORT, default 9102; 0 = any)
  --size S              small|medium|large seeded data (env SANDBOX_SIZE, default small)
  --seed N              data seed (env SANDBOX_SEED, default 7)
  --history-days N      invoices spread over the last N days (env SANDBOX_HISTORY_DAYS, default 30)
  --retailer NAME       Retailer header value (env KIOTVIET_RETAILER, default testfnbz15xyz)
  --client-id ID        KiotViet client id (env KIOTVIET_CLIENT_ID, default demo-client)
  --client-secret S     KiotViet client secret (env KIOTVIET_CLIENT_SECRET, default demo-secret)
  --abaha-token T       bearer token Abaha expects (env ABAHA_API_TOKEN, default abaha-demo-token)
  --no-delivery         start with the shop's delivery feature switched off
  -h, --help            this text";

struct Options {
    kv: KvConfig,
    abaha: AbahaConfig,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut kv = KvConfig {
        port: Some(9101),
        ..KvConfig::default()
    };
    let mut abaha = AbahaConfig {
        port: Some(9102),
        ..AbahaConfig::default()
    };
    let mut values: Vec<(String, String)> = [
        ("--kiotviet-port", "SANDBOX_KIOTVIET_PORT"),
        ("--abaha-port", "SANDBOX_ABAHA_PORT"),
        ("--size", "SANDBOX_SIZE"),
        ("--seed", "SANDBOX_SEED"),
        ("--history-days", "SANDBOX_HISTORY_DAYS"),
        ("--retailer", "KIOTVIET_RETAILER"),
        ("--client-id", "KIOTVIET_CLIENT_ID"),
        ("--client-secret", "KIOTVIET_CLIENT_SECRET"),
        ("--abaha-token", "ABAHA_API_TOKEN"),
    ]
    .iter()
    .filter_map(|(flag, var)| env(var).map(|v| (flag.to_string(), v)))
    .collect();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-h" | "--help" => return Err(String::new()),
            "--no-delivery" => kv.settings.delivery_enabled = false,
            flag if flag.starts_with("--") => {
                let (name, inline) = match flag.split_once('=') {
                    Some((n, v)) => (n.to_string(), Some(v.to_string())),
                    None => (flag.to_string(), None),
                };
                let value = match inline {
                    Some(v) => v,
                    None => it.next().cloned().ok_or(format!("{name} needs a value"))?,
                };
                values.push((name, value));
            }
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    let number = |flag: &str, v: &str| -> Result<u64, String> {
        v.parse()
            .map_err(|_| format!("{flag}: {v:?} is not a number"))
    };
    let port = |flag: &str, v: &str| -> Result<u16, String> {
        v.parse()
            .map_err(|_| format!("{flag}: {v:?} is not a port"))
    };
    for (flag, v) in values {
        match flag.as_str() {
            "--kiotviet-port" => kv.port = Some(port(&flag, &v)?),
            "--abaha-port" => abaha.port = Some(port(&flag, &v)?),
            "--size" => kv.size = v.parse::<DataSize>()?,
            "--seed" => kv.seed = number(&flag, &v)?,
            "--history-days" => kv.history_days = number(&flag, &v)? as u32,
            "--retailer" => kv.retailer = v,
            "--client-id" => kv.client_id = v,
            "--client-secret" => kv.client_secret = v,
            "--abaha-token" => abaha.token = v,
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(Options { kv, abaha })
}

/// One line on stdout, flushed; a reader that has gone away (closed pipe) is not an error.
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|_| out.flush());
}

async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match parse(&args) {
        Ok(o) => o,
        Err(e) if e.is_empty() => {
            say(USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("sandbox: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let (retailer, client_id, size) = (
        opts.kv.retailer.clone(),
        opts.kv.client_id.clone(),
        opts.kv.size.clone(),
    );
    let kv = match KiotVietSim::start(opts.kv).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("sandbox: cannot start the KiotViet simulator: {e}");
            return ExitCode::FAILURE;
        }
    };
    let abaha = match AbahaSim::start(opts.abaha).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("sandbox: cannot start the Abaha sandbox: {e}");
            return ExitCode::FAILURE;
        }
    };
    say(&format!(
        "{} kiotviet-fnb token_url={} retailer={retailer} client_id={client_id} size={size:?}",
        kv.url(),
        kv.token_url(),
    ));
    say(&format!("{} abaha-sync-api", abaha.url()));
    stop_signal().await;
    drop((kv, abaha));
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn flags_override_defaults() {
        let o = parse(&args(
            "--kiotviet-port 0 --abaha-port=1234 --size large --seed 9 --no-delivery",
        ))
        .unwrap();
        assert_eq!(o.kv.port, Some(0));
        assert_eq!(o.abaha.port, Some(1234));
        assert_eq!(o.kv.size, DataSize::Large);
        assert_eq!(o.kv.seed, 9);
        assert!(!o.kv.settings.delivery_enabled);
    }

    #[test]
    fn bad_flags_are_refused() {
        assert!(parse(&args("--size huge")).is_err());
        assert!(parse(&args("--kiotviet-port")).is_err());
        assert!(parse(&args("--frobnicate 1")).is_err());
        assert!(parse(&args("stray")).is_err());
    }
}
