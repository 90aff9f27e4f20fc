//! Structured logs in the shape etcd's zap logger writes them (the server;
//! the tools use zap's console lines, [`init_console`]): one JSON object per
//! line with `level`, `ts`, `caller`, `msg`, then the event's
//! fields, e.g.
//! `{"level":"info","ts":"2026-11-21T11:18:11.557Z","caller":"server/src/serve.rs:98","msg":"ready to serve client requests"}`.
//! Operators' tooling parses these lines and waits for the messages.

use std::fmt;
use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// The crates of this workspace, by the prefix of their tracing targets
/// (`etcd` covers `etcdctl`, `etcdutl` and `etcdfmt`).
const OUR_CRATES: &[&str] = &[
    "etcd_server",
    "datadir",
    "wal",
    "mvcc",
    "lease",
    "api",
    "etcd",
];

/// Where log lines go (`--log-outputs`): stderr, stdout or files.
type Sink = Arc<Mutex<Box<dyn Write + Send>>>;

struct ZapLayer {
    max_level: Level,
    sinks: Vec<Sink>,
    encoding: Encoding,
}

/// zap's two encoders: JSON lines (the server) and tab-separated console
/// lines (etcd's command-line tools, e.g. etcdutl).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Json,
    Console,
}

struct Fields(Map<String, Value>);

/// etcd's field names use dashes (`local-member-id`); Rust identifiers cannot.
fn key(field: &Field) -> String {
    field.name().replace('_', "-")
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(key(field), Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(key(field), Value::String(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(key(field), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(key(field), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(key(field), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(key(field), Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(key(field), Value::String(value.to_string()));
    }
}

impl<S: Subscriber> Layer<S> for ZapLayer {
    fn enabled(&self, metadata: &tracing::Metadata<'_>, _: Context<'_, S>) -> bool {
        // Our crates log at the configured level; libraries only their warnings and errors.
        let ours = OUR_CRATES.iter().any(|c| metadata.target().starts_with(c));
        let level = *metadata.level();
        level <= self.max_level && (ours || level <= Level::WARN)
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        let mut fields = Fields(Map::new());
        event.record(&mut fields);
        let msg = fields
            .0
            .shift_remove("message")
            .unwrap_or(Value::String(String::new()));
        let level = match *meta.level() {
            Level::ERROR => "error",
            Level::WARN => "warn",
            Level::INFO => "info",
            _ => "debug",
        };
        let caller = match (meta.file(), meta.line()) {
            (Some(f), Some(l)) => format!("{}:{l}", f.trim_start_matches("crates/")),
            _ => meta.target().to_string(),
        };
        let now = std::time::SystemTime::now();
        let mut text = match self.encoding {
            Encoding::Json => {
                let mut line = Map::new();
                line.insert("level".into(), Value::from(level));
                line.insert(
                    "ts".into(),
                    Value::from(humantime::format_rfc3339_millis(now).to_string()),
                );
                line.insert("caller".into(), Value::from(caller));
                line.insert("msg".into(), msg);
                line.extend(fields.0);
                let Ok(text) = serde_json::to_vec(&Value::Object(line)) else {
                    return;
                };
                text
            }
            Encoding::Console => {
                let msg = msg.as_str().unwrap_or_default().to_string();
                let mut text = format!(
                    "{}\t{level}\t{caller}\t{msg}",
                    humantime::format_rfc3339_seconds(now)
                );
                if !fields.0.is_empty() {
                    text.push('\t');
                    text.push_str(&console_fields(&fields.0));
                }
                text.into_bytes()
            }
        };
        text.push(b'\n');
        for sink in &self.sinks {
            if let Ok(mut w) = sink.lock() {
                let _ = w.write_all(&text);
            }
        }
    }
}

/// The fields of a console line as zap's console encoder writes them: a
/// JSON object with `": "` and `", "` between its parts
/// (`{"path": "db", "took": 0.02}`).
fn console_fields(fields: &Map<String, Value>) -> String {
    let parts: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}: {v}", Value::from(k.as_str())))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

/// Installs the global logger. `outputs` are etcd's `--log-outputs` values.
pub fn init(max_level: Level, outputs: &[String]) -> std::io::Result<()> {
    let mut sinks: Vec<Sink> = Vec::new();
    for out in outputs {
        let w: Box<dyn Write + Send> = match out.as_str() {
            "default" | "stderr" => Box::new(std::io::stderr()),
            "stdout" => Box::new(std::io::stdout()),
            path => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        sinks.push(Arc::new(Mutex::new(w)));
    }
    let _ = tracing_subscriber::registry()
        .with(ZapLayer {
            max_level,
            sinks,
            encoding: Encoding::Json,
        })
        .try_init();
    Ok(())
}

/// Installs the global logger of a command-line tool: zap's console lines
/// on stderr, as etcd's tools write them: time, level, caller, message and
/// the fields as JSON, separated by tabs.
pub fn init_console(max_level: Level) {
    let sink: Sink = Arc::new(Mutex::new(Box::new(std::io::stderr())));
    let _ = tracing_subscriber::registry()
        .with(ZapLayer {
            max_level,
            sinks: vec![sink],
            encoding: Encoding::Console,
        })
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_fields_are_spaced_as_zaps() {
        let mut fields = Map::new();
        fields.insert("storage-version".into(), Value::from("3.6"));
        fields.insert("took".into(), Value::from(0.5));
        assert_eq!(
            console_fields(&fields),
            r#"{"storage-version": "3.6", "took": 0.5}"#
        );
    }
}
