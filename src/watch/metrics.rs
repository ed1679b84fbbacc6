//! `--metrics-addr`: the watcher's state as Prometheus text, over plain
//! HTTP on a loopback (or any) address. Labels carry secret names only,
//! never a value and never a reference's parameters.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::status::{Status, unix};

/// The state the metrics are rendered from, updated by the watcher.
pub type Shared = Arc<Mutex<Status>>;

/// Serves `GET /metrics` (any path) on `listener` from a thread of its own.
pub fn serve(listener: TcpListener, shared: Shared) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("hushbox-metrics".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
                // The request line and headers are read and ignored: every
                // path answers the same text.
                let mut request = [0u8; 2048];
                let _ = stream.read(&mut request);
                let body = {
                    let status = shared.lock().unwrap_or_else(|p| p.into_inner());
                    render(&status, SystemTime::now())
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        })?;
    Ok(())
}

/// A label value, escaped as the text format asks.
fn label(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The Prometheus text of `status` at `now`.
pub fn render(status: &Status, now: SystemTime) -> String {
    let now = unix(now);
    let mut text = String::new();
    let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(Option<&str>, String)>| {
        text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (secret, value) in rows {
            match secret {
                Some(secret) => {
                    text.push_str(&format!("{name}{{secret=\"{}\"}} {value}\n", label(secret)))
                }
                None => text.push_str(&format!("{name} {value}\n")),
            }
        }
    };
    family(
        "hushbox_generation",
        "gauge",
        "Generations committed by this watcher (1: the first).",
        vec![(None, status.generation.to_string())],
    );
    let rows = |value: &dyn Fn(&super::status::SecretStatus) -> Option<String>| {
        status
            .secrets
            .iter()
            .filter_map(|(name, secret)| Some((Some(name.as_str()), value(secret)?)))
            .collect::<Vec<_>>()
    };
    family(
        "hushbox_secret_last_success_timestamp_seconds",
        "gauge",
        "When the secret was last fetched (or found unchanged) successfully.",
        rows(&|secret| Some(secret.last_success.to_string())),
    );
    family(
        "hushbox_secret_consecutive_failures",
        "gauge",
        "Failed rounds since the secret's last success.",
        rows(&|secret| Some(secret.failures.to_string())),
    );
    family(
        "hushbox_secret_stale",
        "gauge",
        "1 when the secret has gone longer than max_stale without success.",
        rows(&|secret| {
            Some(u8::from(now.saturating_sub(secret.last_success) > secret.max_stale).to_string())
        }),
    );
    family(
        "hushbox_secret_expiry_seconds",
        "gauge",
        "Seconds until the secret's lease or certificate expires.",
        rows(&|secret| {
            secret
                .lease_expires
                .map(|expires| (expires as i64 - now as i64).to_string())
        }),
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::status::SecretStatus;

    #[test]
    fn names_only_and_every_family() {
        let now = SystemTime::now();
        let mut status = Status::new();
        status.generation = 3;
        status.secrets.insert(
            "tls.crt".into(),
            SecretStatus {
                last_success: unix(now) - 5,
                max_stale: 60,
                failures: 2,
                error: Some("vault://pki/issue/web?common_name=x: unavailable".into()),
                lease_expires: Some(unix(now) + 20),
            },
        );
        let text = render(&status, now);
        assert!(text.contains("hushbox_generation 3\n"), "{text}");
        assert!(text.contains("hushbox_secret_consecutive_failures{secret=\"tls.crt\"} 2\n"));
        assert!(text.contains("hushbox_secret_expiry_seconds{secret=\"tls.crt\"} 20\n"));
        assert!(text.contains("hushbox_secret_stale{secret=\"tls.crt\"} 0\n"));
        assert!(
            !text.contains("common_name"),
            "no reference parameters: {text}"
        );
    }
}
