//! etcd's YAML configuration file (`--config-file`, `ETCD_CONFIG_FILE`).
//!
//! etcd reads the file with a YAML-to-JSON conversion and Go's JSON decoder
//! into its `embed.Config` struct, so this module reproduces what that
//! decoder accepts and how it fails, rather than what YAML would allow:
//! - each key has a Go type; a value of another YAML type is refused with
//!   Go's words, e.g. `auto-compaction-retention: 24` (a number) gives
//!   `error unmarshaling JSON: while decoding JSON: json: cannot unmarshal
//!   number into Go struct field configYAML.auto-compaction-retention of type
//!   string` — only `"24"` is a string. Durations are integer nanoseconds.
//! - plain scalars are typed as go-yaml v2 types them (YAML 1.1): `yes`/`no`/
//!   `on`/`off` are booleans, `0x10` and `1_000` integers, `1e3` a number;
//!   quoted and block scalars are strings.
//! - a null value (`key:` or `key: ~`) leaves the default; an empty URL list
//!   too; a repeated key: the last one wins; keys match case-insensitively
//!   (exact match preferred), as Go's decoder does.
//! - unknown keys are ignored, as etcd ignores them; etcd-rs reports which in
//!   one warning at start, since a key it does not know may be a setting etcd has.
//!
//! The result is the file's values as flag values by flag name, which the
//! flag table (`config.rs`) then parses and checks exactly as it does flags.

use std::collections::HashMap;
use std::path::Path;

mod yaml;

use yaml::Node;

/// What a config file sets.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FileValues {
    /// Raw flag values (as they would be written on the command line) by flag name.
    pub values: HashMap<&'static str, String>,
    /// Keys the file has that etcd-rs does not use (`peer-transport-security.foo` for nested ones).
    pub ignored: Vec<String>,
}

/// The Go type of a key in etcd's `configYAML` struct.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GoType {
    String,
    /// A comma-separated URL list in a string; empty means the default.
    Urls,
    Uint64,
    Uint,
    Int64,
    Bool,
    /// `[]string`, given to the flag comma-separated.
    Strings,
    /// `time.Duration`: integer nanoseconds.
    Duration,
}

impl GoType {
    fn name(self) -> &'static str {
        match self {
            GoType::String | GoType::Urls => "string",
            GoType::Uint64 => "uint64",
            GoType::Uint => "uint",
            GoType::Int64 => "int64",
            GoType::Bool => "bool",
            GoType::Strings => "[]string",
            GoType::Duration => "time.Duration",
        }
    }
}

/// etcd's keys for the flags etcd-rs has; each key is the flag's name, as in etcd.
const TOP_LEVEL: &[(&str, GoType)] = &[
    ("name", GoType::String),
    ("data-dir", GoType::String),
    ("wal-dir", GoType::String),
    ("listen-peer-urls", GoType::Urls),
    ("listen-client-urls", GoType::Urls),
    ("initial-advertise-peer-urls", GoType::Urls),
    ("advertise-client-urls", GoType::Urls),
    ("initial-cluster", GoType::String),
    ("initial-cluster-state", GoType::String),
    ("initial-cluster-token", GoType::String),
    ("snapshot-count", GoType::Uint64),
    ("heartbeat-interval", GoType::Uint),
    ("election-timeout", GoType::Uint),
    ("max-request-bytes", GoType::Uint),
    ("max-txn-ops", GoType::Uint),
    ("auth-token", GoType::String),
    ("auth-token-ttl", GoType::Uint),
    ("bcrypt-cost", GoType::Uint),
    ("max-concurrent-streams", GoType::Uint),
    ("quota-backend-bytes", GoType::Int64),
    ("logger", GoType::String),
    ("log-level", GoType::String),
    ("log-outputs", GoType::Strings),
    ("cipher-suites", GoType::Strings),
    ("tls-min-version", GoType::String),
    ("tls-max-version", GoType::String),
    ("pre-vote", GoType::Bool),
    ("strict-reconfig-check", GoType::Bool),
    ("force-new-cluster", GoType::Bool),
    ("auto-compaction-mode", GoType::String),
    ("auto-compaction-retention", GoType::String),
    (
        "experimental-watch-progress-notify-interval",
        GoType::Duration,
    ),
    ("experimental-enable-lease-checkpoint", GoType::Bool),
    ("experimental-lease-checkpoint-interval", GoType::Duration),
    ("experimental-initial-corrupt-check", GoType::Bool),
    ("experimental-corrupt-check-time", GoType::Duration),
    // etcd-rs only (see config.rs).
    (
        "experimental-auto-compaction-check-interval",
        GoType::Duration,
    ),
];

/// What etcd-rs does with a key of `client-transport-security` / `peer-transport-security`.
#[derive(Clone, Copy)]
enum Side {
    /// Sets this flag.
    Flag(&'static str),
    /// A setting etcd has and etcd-rs does not: ignored (with the warning).
    Ignored,
    /// A restriction etcd has and etcd-rs cannot enforce: a set value refuses to start.
    Refused,
}

struct SecurityKey {
    key: &'static str,
    ty: GoType,
    client: Side,
    peer: Side,
}

const SECURITY: &[SecurityKey] = &[
    SecurityKey {
        key: "cert-file",
        ty: GoType::String,
        client: Side::Flag("cert-file"),
        peer: Side::Flag("peer-cert-file"),
    },
    SecurityKey {
        key: "key-file",
        ty: GoType::String,
        client: Side::Flag("key-file"),
        peer: Side::Flag("peer-key-file"),
    },
    SecurityKey {
        key: "client-cert-auth",
        ty: GoType::Bool,
        client: Side::Flag("client-cert-auth"),
        peer: Side::Flag("peer-client-cert-auth"),
    },
    SecurityKey {
        key: "trusted-ca-file",
        ty: GoType::String,
        client: Side::Flag("trusted-ca-file"),
        peer: Side::Flag("peer-trusted-ca-file"),
    },
    SecurityKey {
        key: "auto-tls",
        ty: GoType::Bool,
        client: Side::Flag("auto-tls"),
        peer: Side::Flag("peer-auto-tls"),
    },
    SecurityKey {
        key: "allowed-cn",
        ty: GoType::Strings,
        client: Side::Refused,
        peer: Side::Flag("peer-cert-allowed-cn"),
    },
    SecurityKey {
        key: "allowed-hostname",
        ty: GoType::Strings,
        client: Side::Flag("client-cert-allowed-hostname"),
        peer: Side::Flag("peer-cert-allowed-hostname"),
    },
    SecurityKey {
        key: "client-cert-file",
        ty: GoType::String,
        client: Side::Ignored,
        peer: Side::Ignored,
    },
    SecurityKey {
        key: "client-key-file",
        ty: GoType::String,
        client: Side::Ignored,
        peer: Side::Ignored,
    },
    SecurityKey {
        key: "skip-client-san-verification",
        ty: GoType::Bool,
        client: Side::Ignored,
        peer: Side::Ignored,
    },
];

/// Flags that take one value in etcd-rs though etcd's key is a list.
const SINGLE_VALUED: &[&str] = &[
    "peer-cert-allowed-cn",
    "client-cert-allowed-hostname",
    "peer-cert-allowed-hostname",
];

/// Reads and decodes the file at `path`; errors in etcd's words.
pub fn load(path: &Path) -> Result<FileValues, String> {
    let bytes = std::fs::read(path).map_err(|e| {
        let op = if e.kind() == std::io::ErrorKind::IsADirectory {
            "read"
        } else {
            "open"
        };
        format!("{op} {}: {}", path.display(), go_errno_text(&e))
    })?;
    let text = String::from_utf8(bytes).map_err(|_| {
        "error converting YAML to JSON: yaml: invalid leading UTF-8 octet".to_string()
    })?;
    parse(&text)
}

/// Decodes a config file's text.
pub fn parse(text: &str) -> Result<FileValues, String> {
    let entries = match yaml::load(text)? {
        None | Some(Node::Null) => return Ok(FileValues::default()),
        Some(Node::Map(entries)) => entries,
        Some(other) => {
            return Err(format!(
                "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal {} into Go value of type embed.configYAML",
                other.kind()
            ))
        }
    };
    let mut out = FileValues::default();
    for (name, node) in last_wins(entries) {
        let canonical = matching(&name, TOP_LEVEL.iter().map(|(k, _)| *k)).or_else(|| {
            matching(
                &name,
                ["client-transport-security", "peer-transport-security"],
            )
        });
        match canonical {
            Some("client-transport-security") => {
                security(&mut out, &node, "client-transport-security", false)?
            }
            Some("peer-transport-security") => {
                security(&mut out, &node, "peer-transport-security", true)?
            }
            Some(flag) => {
                let ty = TOP_LEVEL
                    .iter()
                    .find_map(|(k, ty)| (*k == flag).then_some(*ty))
                    .unwrap_or(GoType::String);
                if let Some(raw) = convert(&node, ty, "configYAML", flag)? {
                    out.values.insert(flag, raw);
                }
            }
            None => out.ignored.push(name),
        }
    }
    for flag in SINGLE_VALUED {
        if let Some(v) = out.values.get(flag) {
            if v.contains(',') {
                return Err(format!(
                    "etcd-rs takes one value for --{flag}; the config file lists several: {v}"
                ));
            }
        }
    }
    Ok(out)
}

/// One of `client-transport-security` / `peer-transport-security`.
fn security(out: &mut FileValues, node: &Node, field: &str, peer: bool) -> Result<(), String> {
    let entries = match node {
        Node::Null => return Ok(()),
        Node::Map(entries) => entries.clone(),
        other => {
            return Err(type_error(
                other.kind(),
                "configYAML",
                field,
                "embed.securityConfig",
            ))
        }
    };
    for (name, value) in last_wins(entries) {
        let Some(found) = matching(&name, SECURITY.iter().map(|k| k.key)) else {
            out.ignored.push(format!("{field}.{name}"));
            continue;
        };
        let Some(spec) = SECURITY.iter().find(|k| k.key == found) else {
            continue;
        };
        let path = format!("{field}.{}", spec.key);
        let raw = convert(&value, spec.ty, "securityConfig", &path)?;
        match (if peer { spec.peer } else { spec.client }, raw) {
            (_, None) => {}
            (Side::Flag(flag), Some(raw)) => {
                out.values.insert(flag, raw);
            }
            (Side::Ignored, Some(_)) => out.ignored.push(path),
            (Side::Refused, Some(raw)) => {
                if !(raw.is_empty() || raw == "false") {
                    return Err(format!(
                        "{path} is not supported by etcd-rs; remove it or leave it empty"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// A node as the flag value its Go type becomes; None when it leaves the default.
fn convert(node: &Node, ty: GoType, strukt: &str, field: &str) -> Result<Option<String>, String> {
    let mismatch = |kind: &str| Err(type_error(kind, strukt, field, ty.name()));
    match (ty, node) {
        (_, Node::Null) => Ok(None),
        (GoType::String, Node::Str(s)) => Ok(Some(s.clone())),
        (GoType::Urls, Node::Str(s)) => Ok(Some(s.clone()).filter(|s| !s.is_empty())),
        (GoType::Bool, Node::Bool(b)) => Ok(Some(b.to_string())),
        (GoType::Uint64 | GoType::Uint, Node::Number(n)) => match n.parse::<u64>() {
            Ok(v) => Ok(Some(v.to_string())),
            Err(_) => mismatch(&format!("number {n}")),
        },
        (GoType::Int64, Node::Number(n)) => match n.parse::<i64>() {
            Ok(v) => Ok(Some(v.to_string())),
            Err(_) => mismatch(&format!("number {n}")),
        },
        (GoType::Duration, Node::Number(n)) => match n.parse::<i64>() {
            Ok(v) => {
                let text =
                    gofmt::duration::format(std::time::Duration::from_nanos(v.unsigned_abs()));
                Ok(Some(if v < 0 { format!("-{text}") } else { text }))
            }
            Err(_) => mismatch(&format!("number {n}")),
        },
        (GoType::Strings, Node::Seq(items)) => {
            let mut values = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Node::Str(s) => values.push(s.clone()),
                    Node::Null => values.push(String::new()),
                    other => return Err(type_error(other.kind(), strukt, field, "string")),
                }
            }
            Ok(Some(values.join(",")).filter(|v| !v.is_empty()))
        }
        (_, other) => mismatch(other.kind()),
    }
}

fn type_error(kind: &str, strukt: &str, field: &str, ty: &str) -> String {
    format!(
        "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal {kind} into Go struct field {strukt}.{field} of type {ty}"
    )
}

/// The entries with a repeated key reduced to its last occurrence, in first-seen order.
fn last_wins(entries: Vec<(String, Node)>) -> Vec<(String, Node)> {
    let mut out: Vec<(String, Node)> = Vec::with_capacity(entries.len());
    for (k, v) in entries {
        match out.iter_mut().find(|(seen, _)| *seen == k) {
            Some(slot) => slot.1 = v,
            None => out.push((k, v)),
        }
    }
    out
}

/// The known key `name` stands for: exact first, then ignoring ASCII case (Go's decoder).
fn matching<'k>(name: &str, known: impl IntoIterator<Item = &'k str> + Clone) -> Option<&'k str> {
    known
        .clone()
        .into_iter()
        .find(|k| *k == name)
        .or_else(|| known.into_iter().find(|k| k.eq_ignore_ascii_case(name)))
}

/// An OS error as Go prints it ("no such file or directory").
fn go_errno_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text).to_string();
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::parse_all;
    use crate::config::{ConfigError, ParseError};
    use std::path::PathBuf;
    use std::time::Duration;

    fn values(text: &str) -> HashMap<&'static str, String> {
        parse(text).unwrap().values
    }

    #[test]
    fn keys_become_flag_values() {
        let v = values(
            "name: n1\n\
             data-dir: /var/lib/etcd\n\
             listen-client-urls: http://127.0.0.1:2379,http://127.0.0.1:22379\n\
             initial-cluster: n1=http://127.0.0.1:2380\n\
             snapshot-count: 5000\n\
             heartbeat-interval: 0x32\n\
             quota-backend-bytes: 1e9\n\
             max-request-bytes: 1_048_576\n\
             pre-vote: no\n\
             log-outputs: [stderr, /tmp/etcd.log]\n\
             auto-compaction-mode: revision\n\
             auto-compaction-retention: \"1000\"\n\
             experimental-watch-progress-notify-interval: 600000000000\n\
             client-transport-security:\n  cert-file: /c.crt\n  client-cert-auth: true\n\
             peer-transport-security:\n  auto-tls: yes\n  allowed-cn: [etcd-peer]\n",
        );
        let want: &[(&str, &str)] = &[
            ("name", "n1"),
            ("data-dir", "/var/lib/etcd"),
            (
                "listen-client-urls",
                "http://127.0.0.1:2379,http://127.0.0.1:22379",
            ),
            ("initial-cluster", "n1=http://127.0.0.1:2380"),
            ("snapshot-count", "5000"),
            ("heartbeat-interval", "50"),
            ("quota-backend-bytes", "1000000000"),
            ("max-request-bytes", "1048576"),
            ("pre-vote", "false"),
            ("log-outputs", "stderr,/tmp/etcd.log"),
            ("auto-compaction-mode", "revision"),
            ("auto-compaction-retention", "1000"),
            ("experimental-watch-progress-notify-interval", "10m0s"),
            ("cert-file", "/c.crt"),
            ("client-cert-auth", "true"),
            ("peer-auto-tls", "true"),
            ("peer-cert-allowed-cn", "etcd-peer"),
        ];
        for (flag, value) in want {
            assert_eq!(v.get(flag).map(String::as_str), Some(*value), "{flag}");
        }
        assert_eq!(v.len(), want.len(), "{v:?}");
    }

    #[test]
    fn nulls_and_empty_urls_leave_defaults_and_the_last_key_wins() {
        let out = parse(
            "name: a\nname: b\ncert-file:\nwal-dir: ~\nlisten-client-urls: ''\n\
             client-transport-security:\n  cert-file:\n  key-file: ~\n\
             bogus: 1\nNAME2: x\n",
        )
        .unwrap();
        assert_eq!(out.values.get("name").map(String::as_str), Some("b"));
        assert_eq!(out.values.len(), 1, "{:?}", out.values);
        assert_eq!(out.ignored, vec!["cert-file", "bogus", "NAME2"]);
        assert_eq!(parse("").unwrap(), FileValues::default());
        assert_eq!(parse("# nothing\n").unwrap(), FileValues::default());
    }

    #[test]
    fn keys_match_case_insensitively_as_go_does() {
        let v = values("Name: upper\nSNAPSHOT-COUNT: 7\n");
        assert_eq!(v.get("name").map(String::as_str), Some("upper"));
        assert_eq!(v.get("snapshot-count").map(String::as_str), Some("7"));
    }

    #[test]
    fn type_errors_are_etcds() {
        let prefix = "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal";
        let cases: &[(&str, &str)] = &[
            ("auto-compaction-retention: 24", "number into Go struct field configYAML.auto-compaction-retention of type string"),
            ("auto-compaction-retention: 1.5", "number into Go struct field configYAML.auto-compaction-retention of type string"),
            ("name: 123", "number into Go struct field configYAML.name of type string"),
            ("name: [a]", "array into Go struct field configYAML.name of type string"),
            ("name: {a: 1}", "object into Go struct field configYAML.name of type string"),
            ("name: true", "bool into Go struct field configYAML.name of type string"),
            ("snapshot-count: \"5\"", "string into Go struct field configYAML.snapshot-count of type uint64"),
            ("snapshot-count: 5.5", "number 5.5 into Go struct field configYAML.snapshot-count of type uint64"),
            ("snapshot-count: -1", "number -1 into Go struct field configYAML.snapshot-count of type uint64"),
            ("snapshot-count: 18446744073709551616", "number 18446744073709552000 into Go struct field configYAML.snapshot-count of type uint64"),
            ("quota-backend-bytes: 9223372036854775808", "number 9223372036854775808 into Go struct field configYAML.quota-backend-bytes of type int64"),
            ("heartbeat-interval: x", "string into Go struct field configYAML.heartbeat-interval of type uint"),
            ("pre-vote: \"true\"", "string into Go struct field configYAML.pre-vote of type bool"),
            ("pre-vote: 1", "number into Go struct field configYAML.pre-vote of type bool"),
            ("log-outputs: stderr", "string into Go struct field configYAML.log-outputs of type []string"),
            ("log-outputs: [1]", "number into Go struct field configYAML.log-outputs of type string"),
            ("experimental-watch-progress-notify-interval: 10m", "string into Go struct field configYAML.experimental-watch-progress-notify-interval of type time.Duration"),
            ("experimental-watch-progress-notify-interval: 1.5", "number 1.5 into Go struct field configYAML.experimental-watch-progress-notify-interval of type time.Duration"),
            ("client-transport-security: x", "string into Go struct field configYAML.client-transport-security of type embed.securityConfig"),
            ("client-transport-security: {cert-file: 5}", "number into Go struct field securityConfig.client-transport-security.cert-file of type string"),
            ("peer-transport-security: {auto-tls: {a: 1}}", "object into Go struct field securityConfig.peer-transport-security.auto-tls of type bool"),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text), Err(format!("{prefix} {want}")), "{text}");
        }
        assert_eq!(
            parse("foo"),
            Err(format!(
                "{prefix} string into Go value of type embed.configYAML"
            ))
        );
        assert_eq!(
            parse("- a"),
            Err(format!(
                "{prefix} array into Go value of type embed.configYAML"
            ))
        );
    }

    #[test]
    fn syntax_errors_and_missing_files() {
        let err = parse(": bad: yaml: [").unwrap_err();
        assert!(
            err.starts_with("error converting YAML to JSON: yaml: line 1: "),
            "{err}"
        );
        let err = load(Path::new("/nonexistent/etcd.yml")).unwrap_err();
        assert_eq!(err, "open /nonexistent/etcd.yml: no such file or directory");
    }

    #[test]
    fn security_keys_etcd_rs_cannot_enforce() {
        let out = parse("client-transport-security: {client-cert-file: /x, allowed-cn: [], skip-client-san-verification: false}").unwrap();
        assert_eq!(
            out.ignored,
            vec![
                "client-transport-security.client-cert-file",
                "client-transport-security.skip-client-san-verification"
            ]
        );
        let err = parse("client-transport-security: {allowed-cn: [admin]}").unwrap_err();
        assert!(
            err.contains("client-transport-security.allowed-cn is not supported"),
            "{err}"
        );
        let err = parse("peer-transport-security: {allowed-cn: [a, b]}").unwrap_err();
        assert!(
            err.contains("one value for --peer-cert-allowed-cn"),
            "{err}"
        );
    }

    fn write_file(dir: &tempfile::TempDir, text: &str) -> String {
        let path = dir.path().join("etcd.conf.yml");
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    #[test]
    fn a_config_file_replaces_flags_and_env() {
        use crate::config::retention::Retention;
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(
            &dir,
            "name: fromfile\n\
             initial-advertise-peer-urls: http://127.0.0.1:3380\n\
             quota-backend-bytes: 123456789\n\
             auto-compaction-mode: revision\n\
             auto-compaction-retention: \"5\"\n\
             bogus-key: 1\n",
        );
        let env = [
            ("ETCD_NAME", "fromenv"),
            ("ETCD_MAX_TXN_OPS", "3"),
            ("ETCD_AUTO_COMPACTION_RETENTION", "7"),
        ];
        let from_flag = parse_all(
            &[
                "--config-file",
                &path,
                "--name=fromflag",
                "--snapshot-count=5",
            ],
            &env,
        )
        .unwrap();
        let config_file_env: Vec<(&str, &str)> = env
            .iter()
            .copied()
            .chain([("ETCD_CONFIG_FILE", path.as_str())])
            .collect();
        let from_env = parse_all(&["--name=fromflag"], &config_file_env).unwrap();
        let from_env_empty_flag =
            parse_all(&["--config-file=", "--name=fromflag"], &config_file_env).unwrap();
        for c in [from_flag, from_env, from_env_empty_flag] {
            assert_eq!(c.name, "fromfile");
            assert_eq!(c.data_dir, PathBuf::from("fromfile.etcd"));
            assert_eq!(c.snapshot_count, 10000, "the flag is ignored");
            assert_eq!(c.max_txn_ops, 128, "the environment is ignored");
            assert_eq!(c.quota_backend_bytes, 123456789);
            assert_eq!(c.auto_compaction, Some(Retention::Revision(5)));
            assert_eq!(
                c.initial_cluster,
                vec![(
                    "fromfile".to_string(),
                    vec!["http://127.0.0.1:3380".to_string()]
                )]
            );
            assert_eq!(c.config_file, Some(PathBuf::from(&path)));
            assert_eq!(c.ignored_config_keys, vec!["bogus-key"]);
        }
        // Flags are still parsed: an unknown one is an error even with a file.
        assert_eq!(
            parse_all(&["--config-file", &path, "--bogus"], &[]).unwrap_err(),
            ParseError::Flag(ConfigError("flag provided but not defined: -bogus".into()))
        );
    }

    #[test]
    fn config_file_errors_are_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let verify = |error: &str| ParseError::Refused {
            msg: "failed to verify flags",
            error: error.to_string(),
        };
        let path = write_file(&dir, "auto-compaction-retention: 24\n");
        assert_eq!(
            parse_all(&["--config-file", &path], &[]).unwrap_err(),
            verify("error unmarshaling JSON: while decoding JSON: json: cannot unmarshal number into Go struct field configYAML.auto-compaction-retention of type string")
        );
        let path = write_file(&dir, "initial-cluster-state: old\n");
        assert_eq!(
            parse_all(&["--config-file", &path], &[]).unwrap_err(),
            verify("invalid value \"old\" for flag -initial-cluster-state: valid values are \"new\", \"existing\"")
        );
        let path = write_file(&dir, "auto-compaction-mode: foo\n");
        assert_eq!(
            parse_all(&["--config-file", &path], &[]).unwrap_err(),
            verify("unknown auto-compaction-mode \"foo\"")
        );
        let missing = dir.path().join("missing.yml").display().to_string();
        assert_eq!(
            parse_all(&["--config-file", &missing], &[]).unwrap_err(),
            verify(&format!("open {missing}: no such file or directory"))
        );
        // Without a mode the file's retention is periodic, the flag's default
        // (etcd 3.6; 3.5.1 left the mode empty there, etcd issue 14894).
        let path = write_file(&dir, "auto-compaction-retention: \"24\"\n");
        assert_eq!(
            parse_all(&["--config-file", &path], &[])
                .unwrap()
                .auto_compaction,
            Some(crate::config::retention::Retention::Periodic(
                Duration::from_secs(24 * 3600)
            ))
        );
    }
}
