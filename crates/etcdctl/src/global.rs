//! The flags every command takes (etcdctl's persistent flags) and their
//! `ETCDCTL_*` environment variables.
//!
//! etcdctl applies the variables (etcd's `flags.SetPflagsFromEnv`) when a
//! command builds its client, and so do we ([`GlobalArgs::client_config`]):
//! - a variable sets its flag only when the flag is not on the command line
//!   and the value is not empty; a value that does not parse sets the zero
//!   value (`false`, `0s`), as pflag's `Set` does, and is otherwise ignored;
//! - a variable whose flag is also on the command line stops the process
//!   (exit 1, zap's fatal line): etcdctl refuses the ambiguity;
//! - any other `ETCDCTL_*` variable gets an "unrecognized environment
//!   variable" warning (`ETCDCTL_API` is consumed before, as etcdctl's
//!   `main` does);
//! - `--debug` prints every global flag as `ETCDCTL_<NAME>=<value>` on stderr.
//!
//! Most of etcdctl's commands read `--command-timeout` before they build
//! the client, so `ETCDCTL_COMMAND_TIMEOUT` does not reach them: the client
//! config keeps the flag's value unless a command asks for the other order
//! ([`crate::cmd::Ctx::client_env_timeout`]).

use std::ffi::OsString;
use std::time::Duration;

use clap::Args;

use crate::error::{CtlError, CtlResult, EXIT_ERROR};
use crate::output::{Format, Printer};

/// Go's `strconv.ParseBool`, for `--flag=true` and `ETCDCTL_FLAG=1`.
pub fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!(
            "strconv.ParseBool: parsing {}: invalid syntax",
            gofmt::duration::quote(s)
        )),
    }
}

/// Go's `strconv.ParseInt(s, 10, 64)`, for integer flags.
pub fn parse_go_i64(s: &str) -> Result<i64, String> {
    parse_int(s, 10)
}

/// `strconv.ParseInt(s, base, 64)` with Go's error texts.
pub fn parse_int(s: &str, base: u32) -> Result<i64, String> {
    let quoted = gofmt::duration::quote(s);
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(base)) {
        return Err(format!(
            "strconv.ParseInt: parsing {quoted}: invalid syntax"
        ));
    }
    i64::from_str_radix(s, base)
        .map_err(|_| format!("strconv.ParseInt: parsing {quoted}: value out of range"))
}

/// `strconv.ParseUint(s, base, 64)` with Go's error texts.
pub fn parse_uint(s: &str, base: u32) -> Result<u64, String> {
    let quoted = gofmt::duration::quote(s);
    if s.is_empty() || !s.chars().all(|c| c.is_digit(base)) {
        return Err(format!(
            "strconv.ParseUint: parsing {quoted}: invalid syntax"
        ));
    }
    u64::from_str_radix(s, base)
        .map_err(|_| format!("strconv.ParseUint: parsing {quoted}: value out of range"))
}

/// Go's `time.ParseDuration`.
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let nanos = gofmt::duration::parse(s)?;
    Ok(Duration::from_nanos(nanos.max(0) as u64))
}

/// Global flags (`etcdctl --help` lists them as GLOBAL OPTIONS).
#[derive(Args, Debug, Clone)]
pub struct GlobalArgs {
    /// gRPC endpoints
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "127.0.0.1:2379"
    )]
    pub endpoints: Vec<String>,

    /// enable client-side debug logging
    #[arg(long, global = true, value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true")]
    pub debug: bool,

    /// set the output format (fields, json, protobuf, simple, table)
    #[arg(
        short = 'w',
        long = "write-out",
        global = true,
        default_value = "simple"
    )]
    pub write_out: String,

    /// print byte strings as hex encoded strings
    #[arg(long, global = true, value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true")]
    pub hex: bool,

    /// dial timeout for client connections
    #[arg(long, global = true, value_parser = parse_go_duration, default_value = "2s")]
    pub dial_timeout: Duration,

    /// timeout for short running command (excluding dial timeout)
    #[arg(long, global = true, value_parser = parse_go_duration, default_value = "5s")]
    pub command_timeout: Duration,

    /// keepalive time for client connections
    #[arg(long, global = true, value_parser = parse_go_duration, default_value = "2s")]
    pub keepalive_time: Duration,

    /// keepalive timeout for client connections
    #[arg(long, global = true, value_parser = parse_go_duration, default_value = "6s")]
    pub keepalive_timeout: Duration,

    /// disable transport security for client connections
    #[arg(long, global = true, value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_value = "true", default_missing_value = "true")]
    pub insecure_transport: bool,

    /// accept insecure SRV records describing cluster endpoints
    #[arg(long, global = true, value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_value = "true", default_missing_value = "true")]
    pub insecure_discovery: bool,

    /// skip server certificate verification (CAUTION: this option should be enabled only for testing purposes)
    #[arg(long, global = true, value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true")]
    pub insecure_skip_tls_verify: bool,

    /// identify secure client using this TLS certificate file
    #[arg(long, global = true)]
    pub cert: Option<String>,

    /// identify secure client using this TLS key file
    #[arg(long, global = true)]
    pub key: Option<String>,

    /// verify certificates of TLS-enabled secure servers using this CA bundle
    #[arg(long, global = true)]
    pub cacert: Option<String>,

    /// username[:password] for authentication (prompt if password is not supplied)
    #[arg(long, global = true)]
    pub user: Option<String>,

    /// password for authentication (if this option is used, --user option shouldn't include password)
    #[arg(long, global = true)]
    pub password: Option<String>,

    /// domain name to query for SRV records describing cluster endpoints
    #[arg(short = 'd', long, global = true)]
    pub discovery_srv: Option<String>,

    /// service name to query when using DNS discovery
    #[arg(long, global = true)]
    pub discovery_srv_name: Option<String>,

    /// What reading the `ETCDCTL_*` variables found (set by [`GlobalArgs::apply_env`]).
    #[arg(skip)]
    pub env: EnvReport,
}

/// The global flags by name, in the order pflag visits them (sorted).
pub const GLOBAL_FLAGS: [&str; 18] = [
    "cacert",
    "cert",
    "command-timeout",
    "debug",
    "dial-timeout",
    "discovery-srv",
    "discovery-srv-name",
    "endpoints",
    "hex",
    "insecure-discovery",
    "insecure-skip-tls-verify",
    "insecure-transport",
    "keepalive-time",
    "keepalive-timeout",
    "key",
    "password",
    "user",
    "write-out",
];

/// `ETCDCTL_DIAL_TIMEOUT` for `dial-timeout` (etcd's `flags.FlagToEnv`).
pub fn env_name(flag: &str) -> String {
    format!("ETCDCTL_{}", flag.to_uppercase().replace('-', "_"))
}

/// What the environment said, kept until a command builds its client.
#[derive(Debug, Clone, Default)]
pub struct EnvReport {
    /// In environment order, up to and including the first conflict.
    events: Vec<EnvEvent>,
    /// `--command-timeout` as the command line (or its default) gave it.
    command_timeout_flag: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum EnvEvent {
    /// `NAME=value` matches no global flag (or was empty and so unused).
    Unrecognized(String),
    /// `NAME` is also given as a flag.
    Conflict(String),
}

/// Every `--endpoints` value on the command line, in order, when the flag
/// is given more than once: pflag appends a repeated slice flag, while
/// clap keeps a global flag's last occurrence.
pub fn repeated_endpoints(args: impl IntoIterator<Item = String>) -> Option<Vec<String>> {
    let mut found = Vec::new();
    let mut times = 0;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        let value = if arg == "--endpoints" {
            args.next()
        } else {
            arg.strip_prefix("--endpoints=").map(str::to_string)
        };
        if let Some(v) = value {
            times += 1;
            found.extend(v.split(',').map(str::to_string));
        }
    }
    (times > 1).then_some(found)
}

/// Credentials for the Auth service.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

/// TLS settings, when the connection is secured.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    pub cert: Option<String>,
    pub key: Option<String>,
    pub cacert: Option<String>,
    /// The name to verify the server's certificate against (from --discovery-srv).
    pub server_name: Option<String>,
    pub skip_verify: bool,
}

/// Everything needed to reach the cluster.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub endpoints: Vec<String>,
    pub dial_timeout: Duration,
    pub command_timeout: Duration,
    pub keepalive_time: Duration,
    pub keepalive_timeout: Duration,
    /// `None`: plain HTTP/2.
    pub tls: Option<TlsSettings>,
    pub credentials: Option<Credentials>,
}

impl GlobalArgs {
    /// The writer `-w` and `--hex` select ("unsupported output format" otherwise).
    pub fn printer(&self) -> CtlResult<Printer> {
        let format = Format::parse(&self.write_out)
            .ok_or_else(|| CtlError::bad_feature("unsupported output format"))?;
        Ok(Printer::new(format, self.hex))
    }

    /// Applies the `ETCDCTL_*` variables of `environ` to the flags that
    /// `given` (flag name → on the command line) says were not given, and
    /// records what to report when the client is built.
    pub fn apply_env(
        &mut self,
        given: impl Fn(&str) -> bool,
        environ: impl IntoIterator<Item = (OsString, OsString)>,
    ) {
        self.env.command_timeout_flag = Some(self.command_timeout);
        let mut used = Vec::new();
        let mut events = Vec::new();
        let vars: Vec<(String, String)> = environ
            .into_iter()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.to_string_lossy().into_owned())))
            .collect();
        for flag in GLOBAL_FLAGS {
            if given(flag) {
                continue;
            }
            let name = env_name(flag);
            if let Some((_, value)) = vars.iter().find(|(k, v)| *k == name && !v.is_empty()) {
                self.set_from_text(flag, value);
                used.push(name);
            }
        }
        for (name, value) in &vars {
            if used.contains(name) || name == "ETCDCTL_API" {
                continue;
            }
            let shadowed = GLOBAL_FLAGS
                .iter()
                .any(|flag| given(flag) && env_name(flag) == *name);
            if shadowed {
                events.push(EnvEvent::Conflict(name.clone()));
                break;
            }
            if name.starts_with("ETCDCTL_") {
                events.push(EnvEvent::Unrecognized(format!("{name}={value}")));
            }
        }
        self.env.events = events;
    }

    /// Sets a flag from text as pflag's `Value.Set` does: a value that does
    /// not parse leaves the type's zero value.
    fn set_from_text(&mut self, flag: &str, value: &str) {
        let boolean = |v: &str| parse_go_bool(v).unwrap_or(false);
        let duration = |v: &str| parse_go_duration(v).unwrap_or(Duration::ZERO);
        let text = || Some(value.to_string());
        match flag {
            "cacert" => self.cacert = text(),
            "cert" => self.cert = text(),
            "command-timeout" => self.command_timeout = duration(value),
            "debug" => self.debug = boolean(value),
            "dial-timeout" => self.dial_timeout = duration(value),
            "discovery-srv" => self.discovery_srv = text(),
            "discovery-srv-name" => self.discovery_srv_name = text(),
            "endpoints" => self.endpoints = csv_fields(value),
            "hex" => self.hex = boolean(value),
            "insecure-discovery" => self.insecure_discovery = boolean(value),
            "insecure-skip-tls-verify" => self.insecure_skip_tls_verify = boolean(value),
            "insecure-transport" => self.insecure_transport = boolean(value),
            "keepalive-time" => self.keepalive_time = duration(value),
            "keepalive-timeout" => self.keepalive_timeout = duration(value),
            "key" => self.key = text(),
            "password" => self.password = text(),
            "user" => self.user = text(),
            "write-out" => self.write_out = value.to_string(),
            _ => {}
        }
    }

    /// A flag's value as pflag's `Value.String()` shows it.
    pub fn value_text(&self, flag: &str) -> String {
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        let duration = |d: Duration| gofmt::duration::format(d);
        match flag {
            "cacert" => text(&self.cacert),
            "cert" => text(&self.cert),
            "command-timeout" => duration(self.command_timeout),
            "debug" => self.debug.to_string(),
            "dial-timeout" => duration(self.dial_timeout),
            "discovery-srv" => text(&self.discovery_srv),
            "discovery-srv-name" => text(&self.discovery_srv_name),
            "endpoints" => format!("[{}]", csv_line(&self.endpoints)),
            "hex" => self.hex.to_string(),
            "insecure-discovery" => self.insecure_discovery.to_string(),
            "insecure-skip-tls-verify" => self.insecure_skip_tls_verify.to_string(),
            "insecure-transport" => self.insecure_transport.to_string(),
            "keepalive-time" => duration(self.keepalive_time),
            "keepalive-timeout" => duration(self.keepalive_timeout),
            "key" => text(&self.key),
            "password" => text(&self.password),
            "user" => text(&self.user),
            "write-out" => self.write_out.clone(),
            _ => String::new(),
        }
    }

    /// What etcdctl does with the environment when a command builds its
    /// client: the warnings, or zap's fatal line and exit 1 on a conflict;
    /// then, with `--debug`, every global flag.
    fn report_env(&self) {
        for event in &self.env.events {
            match event {
                EnvEvent::Unrecognized(entry) => eprintln!(
                    "{}",
                    zap_line(
                        "warn",
                        "flags/flag.go:93",
                        "unrecognized environment variable",
                        entry
                    )
                ),
                EnvEvent::Conflict(name) => {
                    eprintln!(
                        "{}",
                        zap_line(
                            "fatal",
                            "flags/flag.go:85",
                            "conflicting environment variable is shadowed by corresponding command-line flag (either unset environment variable or disable flag))",
                            name
                        )
                    );
                    // zap's Fatal ends the process the same way.
                    std::process::exit(i32::from(EXIT_ERROR));
                }
            }
        }
        if self.debug {
            for flag in GLOBAL_FLAGS {
                eprintln!("{}={}", env_name(flag), self.value_text(flag));
            }
        }
    }

    /// The connection settings, checked as etcdctl checks them. The command
    /// deadline is `--command-timeout` as given on the command line.
    pub fn client_config(&self) -> CtlResult<ClientConfig> {
        self.report_env();
        let mut endpoints = Vec::new();
        let domain = self.discovery_srv.clone().filter(|d| !d.is_empty());
        if let Some(domain) = &domain {
            endpoints = crate::discovery::client_endpoints(
                domain,
                self.discovery_srv_name.as_deref().unwrap_or(""),
                self.insecure_discovery,
            )
            .map_err(CtlError::error)?;
        }
        if endpoints.is_empty() {
            endpoints = self
                .endpoints
                .iter()
                .map(|e| e.trim().to_string())
                .collect();
        }
        for (flag, value) in [
            ("cert", &self.cert),
            ("key", &self.key),
            ("cacert", &self.cacert),
        ] {
            if value.as_deref() == Some("") {
                return Err(CtlError::bad_args(format!(
                    "empty string is passed to --{flag} option"
                )));
            }
        }
        let server_name = domain.filter(|_| !self.insecure_discovery);
        let wants_tls = self.cert.is_some()
            || self.key.is_some()
            || self.cacert.is_some()
            || server_name.is_some();
        let tls = (wants_tls || !self.insecure_transport).then(|| TlsSettings {
            cert: self.cert.clone(),
            key: self.key.clone(),
            cacert: self.cacert.clone(),
            server_name,
            skip_verify: self.insecure_skip_tls_verify,
        });
        Ok(ClientConfig {
            endpoints,
            dial_timeout: self.dial_timeout,
            command_timeout: self
                .env
                .command_timeout_flag
                .unwrap_or(self.command_timeout),
            keepalive_time: self.keepalive_time,
            keepalive_timeout: self.keepalive_timeout,
            tls,
            credentials: self.credentials()?,
        })
    }

    /// `--user name:password`, `--user name --password p`, or a prompt.
    fn credentials(&self) -> CtlResult<Option<Credentials>> {
        let Some(user) = self.user.clone().filter(|u| !u.is_empty()) else {
            return Ok(None);
        };
        if let Some(password) = self.password.clone().filter(|p| !p.is_empty()) {
            return Ok(Some(Credentials { user, password }));
        }
        if let Some((name, password)) = user.split_once(':') {
            return Ok(Some(Credentials {
                user: name.to_string(),
                password: password.to_string(),
            }));
        }
        let password = crate::prompt::ask("Password: ").map_err(CtlError::error)?;
        Ok(Some(Credentials { user, password }))
    }
}

/// One of zap's production JSON lines (how etcd's packages log).
fn zap_line(level: &str, caller: &str, msg: &str, variable: &str) -> String {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let mut line = serde_json::Map::new();
    line.insert("level".into(), level.into());
    line.insert("ts".into(), ts.into());
    line.insert("caller".into(), caller.into());
    line.insert("msg".into(), msg.into());
    line.insert("environment-variable".into(), variable.into());
    serde_json::Value::Object(line).to_string()
}

/// pflag's string slice from text: comma-separated values, `"` quoting as
/// in CSV (encoding/csv).
fn csv_fields(text: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' if quoted => quoted = false,
            '"' if field.is_empty() => quoted = true,
            ',' if !quoted => fields.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    fields.push(field);
    fields
}

/// The string slice back as one CSV line (encoding/csv's quoting rules).
fn csv_line(values: &[String]) -> String {
    values
        .iter()
        .map(|v| {
            let needs_quotes = !v.is_empty()
                && (v.contains([',', '"', '\r', '\n'])
                    || v.starts_with(char::is_whitespace)
                    || v == r"\.");
            if needs_quotes {
                format!("\"{}\"", v.replace('"', "\"\""))
            } else {
                v.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Probe {
        #[command(flatten)]
        global: GlobalArgs,
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    #[test]
    fn repeated_endpoints_append() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            repeated_endpoints(args(&["etcdctl", "--endpoints=a", "get"])),
            None
        );
        assert_eq!(
            repeated_endpoints(args(&["x", "--endpoints=a,b", "get", "--endpoints", "c"])),
            Some(vec!["a".into(), "b".into(), "c".into()])
        );
    }

    #[test]
    fn go_bools() {
        assert_eq!(parse_go_bool("T"), Ok(true));
        assert_eq!(parse_go_bool("0"), Ok(false));
        assert!(parse_go_bool("yes").is_err());
    }

    #[test]
    fn variables_fill_flags_not_given() {
        let mut g = Probe::parse_from(["etcdctl", "--hex"]).global;
        g.apply_env(
            |f| f == "hex",
            env(&[
                ("ETCDCTL_ENDPOINTS", "a:1,\"b,c\":2"),
                ("ETCDCTL_DIAL_TIMEOUT", "zz"),
                ("ETCDCTL_INSECURE_TRANSPORT", "maybe"),
                ("ETCDCTL_COMMAND_TIMEOUT", "1s"),
                ("ETCDCTL_USER", ""),
                ("ETCDCTL_API", "3"),
                ("ETCDCTL_FOO", "1"),
                ("PATH", "/bin"),
            ]),
        );
        assert_eq!(g.endpoints, vec!["a:1".to_string(), "b,c:2".to_string()]);
        assert_eq!(g.value_text("endpoints"), "[a:1,\"b,c:2\"]");
        // pflag leaves the zero value behind a value that does not parse.
        assert_eq!(g.dial_timeout, Duration::ZERO);
        assert!(!g.insecure_transport);
        assert_eq!(g.value_text("command-timeout"), "1s");
        assert_eq!(g.env.command_timeout_flag, Some(Duration::from_secs(5)));
        assert_eq!(g.user, None);
        assert_eq!(
            g.env.events,
            vec![
                EnvEvent::Unrecognized("ETCDCTL_USER=".into()),
                EnvEvent::Unrecognized("ETCDCTL_FOO=1".into())
            ]
        );
    }

    #[test]
    fn a_variable_shadowed_by_its_flag_is_a_conflict() {
        let mut g = Probe::parse_from(["etcdctl", "-w", "json"]).global;
        g.apply_env(
            |f| f == "write-out",
            env(&[("ETCDCTL_WRITE_OUT", "simple"), ("ETCDCTL_BAR", "x")]),
        );
        assert_eq!(g.write_out, "json");
        assert_eq!(
            g.env.events,
            vec![EnvEvent::Conflict("ETCDCTL_WRITE_OUT".into())]
        );
    }

    #[test]
    fn flag_names_map_to_variables() {
        assert_eq!(
            env_name("insecure-skip-tls-verify"),
            "ETCDCTL_INSECURE_SKIP_TLS_VERIFY"
        );
        let g = Probe::parse_from(["etcdctl"]).global;
        let shown: Vec<String> = GLOBAL_FLAGS
            .iter()
            .map(|f| format!("{}={}", env_name(f), g.value_text(f)))
            .collect();
        assert_eq!(shown[2], "ETCDCTL_COMMAND_TIMEOUT=5s");
        assert_eq!(shown[7], "ETCDCTL_ENDPOINTS=[127.0.0.1:2379]");
        assert_eq!(shown[17], "ETCDCTL_WRITE_OUT=simple");
    }
}
