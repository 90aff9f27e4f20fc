//! Health endpoints with etcd 3.6's semantics and bodies:
//!
//! - `/health` (JSON `{"health":"true","reason":""}`): active alarms (minus
//!   `?exclude=NOSPACE`…) make it unhealthy ("ALARM NOSPACE"), then a missing
//!   leader ("RAFT NO LEADER", skipped with `?serializable=true`), then a read
//!   (`"RANGE ERROR:<error>"`; linearizable unless `?serializable=true`).
//! - `/livez` (check `serializable_read`) and `/readyz` (checks
//!   `data_corruption`, `serializable_read`, `linearizable_read`), each check
//!   also on its own sub-path (`/readyz/linearizable_read`). The root paths
//!   take `?exclude=<check>`; every path takes `?verbose`. Success answers
//!   `ok` (after one `[+]<check> ok` line per check with `?verbose`); failure
//!   answers 503 with every check's line, `[-]<check> failed: <error>` for the
//!   failed ones.
//!
//! Only GET is allowed (405 `Method Not Allowed`, as etcd). etcd runs the
//! checks in Go map order; we run them in registration order.

use std::sync::Arc;

use api::etcdserverpb::{AlarmType, RangeRequest};
use api::EtcdError;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::server::EtcdServer;

/// A text answer as Go's `http.Error` and `fmt.Fprint` write it.
fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

fn method_not_allowed() -> Response {
    let mut response = text(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method Not Allowed\n".to_string(),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET"));
    response
}

/// The query parameters of a health request: `exclude` may repeat.
#[derive(Default)]
struct HealthQuery {
    excluded: Vec<String>,
    serializable: bool,
    verbose: bool,
}

impl HealthQuery {
    fn parse(query: Option<&str>) -> HealthQuery {
        let mut q = HealthQuery::default();
        let mut serializable_seen = false;
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value);
            match percent_decode(key).as_str() {
                "exclude" if !value.is_empty() => q.excluded.push(value),
                // Go's Query().Get returns the first value.
                "serializable" if !serializable_seen => {
                    serializable_seen = true;
                    q.serializable = value == "true";
                }
                "verbose" => q.verbose = true,
                _ => {}
            }
        }
        q
    }
}

/// Query-string decoding as Go's url.ParseQuery does it ('+' is a space).
fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `/health`.
pub async fn health(State(server): State<Arc<EtcdServer>>, request: Request) -> Response {
    if request.method() != Method::GET {
        tracing::warn!(status_code = 405, "/health error");
        return method_not_allowed();
    }
    let q = HealthQuery::parse(request.uri().query());
    let reason = match unhealthy_reason(&server, &q).await {
        None => {
            server.metrics().health_success.inc();
            // Go sniffs the JSON as text; only its error path adds nosniff.
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                serde_json::json!({"health": "true", "reason": ""}).to_string(),
            )
                .into_response();
        }
        Some(reason) => reason,
    };
    server.metrics().health_failures.inc();
    let body = serde_json::json!({"health": "false", "reason": reason}).to_string();
    tracing::warn!(output = %body, status_code = 503, "/health error");
    text(StatusCode::SERVICE_UNAVAILABLE, format!("{body}\n"))
}

/// Why `/health` fails, if it does.
async fn unhealthy_reason(server: &EtcdServer, q: &HealthQuery) -> Option<String> {
    for alarm in server.alarms().active() {
        let kind = AlarmType::try_from(alarm.alarm).unwrap_or(AlarmType::None);
        if q.excluded.iter().any(|e| e == kind.as_str_name()) {
            tracing::debug!(alarm = kind.as_str_name(), "/health excluded alarm");
            continue;
        }
        tracing::warn!(
            alarm = kind.as_str_name(),
            "serving /health false due to an alarm"
        );
        return Some(
            match kind {
                AlarmType::Nospace => "ALARM NOSPACE",
                AlarmType::Corrupt => "ALARM CORRUPT",
                AlarmType::None => "ALARM UNKNOWN",
            }
            .to_string(),
        );
    }
    if !q.serializable && server.leader() == 0 {
        tracing::warn!("serving /health false; no leader");
        return Some("RAFT NO LEADER".to_string());
    }
    if let Err(e) = read(server, q.serializable).await {
        tracing::warn!(error = %e, "serving /health false; Range fails");
        return Some(format!("RANGE ERROR:{e}"));
    }
    None
}

/// The read the health checks make: one key, keys only; linearizable unless
/// `serializable`, within the request timeout.
async fn read(server: &EtcdServer, serializable: bool) -> Result<(), EtcdError> {
    if !serializable {
        match tokio::time::timeout(server.request_timeout(), server.read_barrier()).await {
            Ok(result) => result?,
            Err(_) => return Err(EtcdError::Timeout),
        }
    }
    // A range like any other (etcd's health check goes through its Range).
    server.metrics().mvcc.record(1, 0, 0, 0);
    let probe = RangeRequest {
        key: b"health".to_vec(),
        keys_only: true,
        limit: 1,
        serializable: true,
        ..Default::default()
    };
    server.store().range(&probe).map(|_| ()).map_err(|e| {
        tracing::warn!(error = %e, "health check read failed");
        EtcdError::Stopped
    })
}

/// One named check of `/livez` or `/readyz`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    DataCorruption,
    SerializableRead,
    LinearizableRead,
}

impl Check {
    pub fn name(self) -> &'static str {
        match self {
            Check::DataCorruption => "data_corruption",
            Check::SerializableRead => "serializable_read",
            Check::LinearizableRead => "linearizable_read",
        }
    }

    async fn run(self, server: &EtcdServer) -> Result<(), String> {
        match self {
            Check::DataCorruption => {
                let corrupt = server
                    .alarms()
                    .active()
                    .iter()
                    .any(|a| a.alarm == AlarmType::Corrupt as i32);
                if corrupt {
                    Err("alarm activated: CORRUPT".to_string())
                } else {
                    Ok(())
                }
            }
            Check::SerializableRead => read(server, true).await.map_err(|e| e.to_string()),
            Check::LinearizableRead => read(server, false).await.map_err(|e| e.to_string()),
        }
    }
}

/// The checks of `/livez` and `/readyz`, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    Livez,
    Readyz,
}

impl Probe {
    pub fn name(self) -> &'static str {
        match self {
            Probe::Livez => "livez",
            Probe::Readyz => "readyz",
        }
    }

    pub fn checks(self) -> &'static [Check] {
        match self {
            Probe::Livez => &[Check::SerializableRead],
            Probe::Readyz => &[
                Check::DataCorruption,
                Check::SerializableRead,
                Check::LinearizableRead,
            ],
        }
    }
}

/// `/livez`, `/readyz` and their per-check sub-paths: `check` is `None` for
/// the root path (which honours `?exclude=`).
pub async fn probe(
    server: Arc<EtcdServer>,
    probe: Probe,
    check: Option<Check>,
    request: Request,
) -> Response {
    let path = request.uri().path().to_string();
    if request.method() != Method::GET {
        tracing::warn!(path = %path, status_code = 405, "Health request error");
        return method_not_allowed();
    }
    let q = HealthQuery::parse(request.uri().query());
    let checks: Vec<Check> = match check {
        Some(c) => vec![c],
        None => {
            let unknown: Vec<&String> = q
                .excluded
                .iter()
                .filter(|e| !probe.checks().iter().any(|c| c.name() == e.as_str()))
                .collect();
            if !unknown.is_empty() {
                tracing::warn!(missing_health_checks = ?unknown, "some health checks cannot be excluded");
            }
            probe
                .checks()
                .iter()
                .copied()
                .filter(|c| !q.excluded.iter().any(|e| e == c.name()))
                .collect()
        }
    };
    let mut failed = false;
    let mut reason = String::new();
    for c in checks {
        let status = match c.run(&server).await {
            Ok(()) => {
                reason.push_str(&format!("[+]{} ok\n", c.name()));
                "success"
            }
            Err(e) => {
                failed = true;
                reason.push_str(&format!("[-]{} failed: {e}\n", c.name()));
                "error"
            }
        };
        let m = &server.metrics();
        m.healthcheck
            .with_label_values(&[probe.name(), c.name()])
            .set(i64::from(status == "success"));
        m.healthchecks_total
            .with_label_values(&[probe.name(), c.name(), status])
            .inc();
    }
    if failed {
        tracing::error!(path = %path, reason = %reason, status_code = 503, "Health check error");
        return text(StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n"));
    }
    let body = if q.verbose {
        format!("{reason}ok\n")
    } else {
        "ok\n".to_string()
    };
    text(StatusCode::OK, body)
}

/// The health routes, shared by the client port and `--listen-metrics-urls`.
pub fn routes(router: axum::Router<Arc<EtcdServer>>) -> axum::Router<Arc<EtcdServer>> {
    use axum::routing::any;
    let mut router = router.route("/health", any(health));
    for p in [Probe::Livez, Probe::Readyz] {
        router = router.route(
            &format!("/{}", p.name()),
            any(move |State(s): State<Arc<EtcdServer>>, r: Request| probe(s, p, None, r)),
        );
        for &c in p.checks() {
            router = router.route(
                &format!("/{}/{}", p.name(), c.name()),
                any(move |State(s): State<Arc<EtcdServer>>, r: Request| probe(s, p, Some(c), r)),
            );
        }
    }
    router
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing_follows_go() {
        let q = HealthQuery::parse(Some(
            "exclude=NOSPACE&exclude=&exclude=CORRUPT&verbose&serializable=true",
        ));
        assert_eq!(q.excluded, vec!["NOSPACE", "CORRUPT"]);
        assert!(q.verbose && q.serializable);
        let q = HealthQuery::parse(Some("serializable=false&serializable=true&exclude=a%5Fb"));
        assert!(!q.serializable && !q.verbose);
        assert_eq!(q.excluded, vec!["a_b"]);
        let q = HealthQuery::parse(None);
        assert!(q.excluded.is_empty() && !q.verbose && !q.serializable);
    }

    #[test]
    fn probes_and_checks_are_etcds() {
        let names: Vec<&str> = Probe::Readyz.checks().iter().map(|c| c.name()).collect();
        assert_eq!(
            names,
            ["data_corruption", "serializable_read", "linearizable_read"]
        );
        assert_eq!(Probe::Livez.checks(), &[Check::SerializableRead]);
    }
}
