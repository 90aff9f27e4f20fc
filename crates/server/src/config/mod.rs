//! Server configuration from command-line flags and `ETCD_*` environment
//! variables, with etcd's names, defaults and error lines.
//!
//! etcd parses flags with Go's `flag` package, and scripts depend on its
//! behaviour, so this module follows it rather than clap's conventions:
//! - `-name value`, `--name value`, `-name=value` and `--name=value` are all accepted;
//! - a boolean flag takes its value only with `=` (`--flag`, `--flag=false`);
//! - a flag not given on the command line falls back to `ETCD_<NAME>` (upper case,
//!   dashes as underscores), then to the default;
//! - an unknown flag or a bad value ends start-up with one line naming it
//!   (`flag provided but not defined: -foo`,
//!   `invalid value "abc" for flag -max-txn-ops: parse error`).
//! - `--config-file` (or `ETCD_CONFIG_FILE`) replaces every other flag and
//!   every `ETCD_*` variable, as in etcd: the file's values (`file.rs`)
//!   go through this same table, and what the file leaves out takes the
//!   default. Flags are still parsed first, so an unknown flag is still an error.
//!
//! This folder owns the configuration: flags and environment (here), the
//! config file (`file`), auto compaction's mode and retention
//! (`retention`) and the TLS settings with their acceptors (`tls`). It may
//! import the crate root (`limits`, and `status` for its errors) and the
//! `datadir` and `gofmt` crates.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

pub use datadir::urls::{parse_url, parse_urls_map, Url};

pub mod file;
pub mod retention;
pub mod tls;

/// A configuration error: one line, printed as is, exit code 2.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Why the server does not start.
#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    /// A flag error as Go's flag package reports it: one line on stderr, exit code 2.
    Flag(ConfigError),
    /// A configuration etcd refuses once its flags are read (a config file it
    /// cannot read or decode, a bad auto-compaction setting): etcd logs `msg`
    /// with the error and exits with code 1.
    Refused { msg: &'static str, error: String },
}

impl ParseError {
    fn verify(error: impl Into<String>) -> ParseError {
        ParseError::Refused {
            msg: "failed to verify flags",
            error: error.into(),
        }
    }
}

impl From<ConfigError> for ParseError {
    fn from(e: ConfigError) -> Self {
        ParseError::Flag(e)
    }
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::Flag(e) => e.fmt(f),
            ParseError::Refused { msg, error } => write!(f, "{msg}: {error}"),
        }
    }
}

impl std::error::Error for ParseError {}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Run(Box<Config>),
    PrintVersion,
    PrintHelp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterState {
    New,
    Existing,
}

/// TLS for one side: the client listener (`--cert-file`, …) or the peer
/// listener and peer dialing (`--peer-cert-file`, …); etcd's `TLSInfo`.
#[derive(Debug, Clone, Default)]
pub struct TlsInfo {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub trusted_ca_file: Option<PathBuf>,
    /// Require and verify client certificates (also implied by a trusted CA file, as in etcd).
    pub client_cert_auth: bool,
    pub crl_file: Option<PathBuf>,
    /// Generate a self-signed certificate at start (`--auto-tls`, `--peer-auto-tls`).
    pub auto_tls: bool,
    /// The only CommonName a client certificate may have (`--peer-cert-allowed-cn`).
    pub allowed_cn: Option<String>,
    /// A host name or IP a client certificate must be valid for
    /// (`--client-cert-allowed-hostname`, `--peer-cert-allowed-hostname`).
    pub allowed_hostname: Option<String>,
    /// Allowed TLS 1.2 cipher suites by their IANA names (empty: rustls's defaults).
    pub cipher_suites: Vec<String>,
    pub min_version: String,
    pub max_version: String,
}

impl TlsInfo {
    /// No certificate given and none to generate.
    pub fn is_empty(&self) -> bool {
        self.cert_file.is_none() && self.key_file.is_none() && !self.auto_tls
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub name: String,
    pub data_dir: PathBuf,
    pub wal_dir: Option<PathBuf>,
    pub listen_client_urls: Vec<String>,
    pub advertise_client_urls: Vec<String>,
    pub listen_peer_urls: Vec<String>,
    pub initial_advertise_peer_urls: Vec<String>,
    /// (name, peer URLs) in the order given.
    pub initial_cluster: Vec<(String, Vec<String>)>,
    pub initial_cluster_state: ClusterState,
    pub initial_cluster_token: String,
    pub snapshot_count: u64,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_ms: u64,
    pub max_request_bytes: u64,
    pub max_txn_ops: usize,
    /// `--auth-token`: `simple`, or `jwt,…` with its options.
    pub auth_token: String,
    /// `--auth-token-ttl`: a simple token's life after its last use, in seconds.
    pub auth_token_ttl_secs: u64,
    /// `--bcrypt-cost`, for hashing passwords.
    pub bcrypt_cost: u32,
    /// HTTP/2 streams one client connection may open at once (`--max-concurrent-streams`).
    pub max_concurrent_streams: u32,
    pub quota_backend_bytes: i64,
    pub client_tls: TlsInfo,
    pub peer_tls: TlsInfo,
    pub pre_vote: bool,
    pub strict_reconfig_check: bool,
    /// Compare HashKV with the peers before serving (--experimental-initial-corrupt-check).
    pub initial_corrupt_check: bool,
    /// How often the leader compares the members' HashKV (0: never).
    pub corrupt_check_interval: Duration,
    /// `--experimental-watch-progress-notify-interval`.
    pub watch_progress_notify_interval: Duration,
    /// `--experimental-enable-lease-checkpoint`.
    pub lease_checkpointing: bool,
    /// `--experimental-lease-checkpoint-interval`.
    pub lease_checkpoint_interval: Duration,
    pub force_new_cluster: bool,
    /// `--listen-metrics-urls`: extra listeners for /metrics and the health endpoints.
    pub listen_metrics_urls: Vec<String>,
    /// `--metrics`: `extensive` adds gRPC handling-time histograms.
    pub metrics: MetricsLevel,
    pub log_level: tracing::Level,
    pub log_outputs: Vec<String>,
    /// `--auto-compaction-mode` and `--auto-compaction-retention`; None: off.
    pub auto_compaction: Option<retention::Retention>,
    /// etcd-rs only: revision mode's check interval
    /// (`--experimental-auto-compaction-check-interval`; etcd: 5 minutes).
    pub auto_compaction_check_interval: Duration,
    /// The config file the settings came from (`--config-file`), if any.
    pub config_file: Option<PathBuf>,
    /// Keys of the config file that etcd-rs does not use (reported at start).
    pub ignored_config_keys: Vec<String>,
}

impl Default for Config {
    /// etcd's defaults: what `etcd` with no flags and no `ETCD_*` variables
    /// runs with (member `default` in `default.etcd`, clients on
    /// `http://localhost:2379`, peers on `http://localhost:2380`).
    fn default() -> Config {
        match parse(&[], &HashMap::new()) {
            Ok(Command::Run(cfg)) => *cfg,
            // The flag table's defaults parse; its unit tests hold it to that.
            other => unreachable!("no flags parse as a run command, not {other:?}"),
        }
    }
}

impl Config {
    /// Names the member `name` and makes it the only member of its initial
    /// cluster, at its advertised peer URLs (etcd's
    /// `embed.Config.InitialClusterFromName`).
    pub fn with_name(mut self, name: &str) -> Config {
        self.name = name.to_string();
        self.initial_cluster = vec![(name.to_string(), self.initial_advertise_peer_urls.clone())];
        self
    }

    /// etcd's request timeout: 5 s plus two election timeouts.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(5000 + 2 * self.election_timeout_ms)
    }

    pub fn member_dir(&self) -> PathBuf {
        self.data_dir.join("member")
    }

    pub fn wal_dir(&self) -> PathBuf {
        self.wal_dir
            .clone()
            .unwrap_or_else(|| self.member_dir().join("wal"))
    }

    pub fn snap_dir(&self) -> PathBuf {
        self.member_dir().join("snap")
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Value,
}

/// One flag: name, kind, default and help text (etcd's wording where it exists).
struct Flag {
    name: &'static str,
    kind: Kind,
    default: &'static str,
    help: &'static str,
    /// Left out of `--help` (etcd-rs's own test knobs).
    hidden: bool,
}

const fn value(name: &'static str, default: &'static str, help: &'static str) -> Flag {
    Flag {
        name,
        kind: Kind::Value,
        default,
        help,
        hidden: false,
    }
}

const fn hidden_value(name: &'static str, default: &'static str, help: &'static str) -> Flag {
    Flag {
        hidden: true,
        ..value(name, default, help)
    }
}

const fn boolean(name: &'static str, help: &'static str) -> Flag {
    Flag {
        name,
        kind: Kind::Bool,
        default: "false",
        help,
        hidden: false,
    }
}

const fn boolean_true(name: &'static str, help: &'static str) -> Flag {
    Flag {
        name,
        kind: Kind::Bool,
        default: "true",
        help,
        hidden: false,
    }
}

const FLAGS: &[Flag] = &[
    value("config-file", "", "Path to the server configuration file. Note that if a configuration file is provided, other command line flags and environment variables will be ignored."),
    value("name", "default", "Human-readable name for this member."),
    value("data-dir", "", "Path to the data directory (default '${name}.etcd')."),
    value("wal-dir", "", "Path to the dedicated wal directory."),
    value("listen-client-urls", "http://localhost:2379", "List of URLs to listen on for client traffic."),
    value("advertise-client-urls", "http://localhost:2379", "List of this member's client URLs to advertise to the public."),
    value("listen-peer-urls", "http://localhost:2380", "List of URLs to listen on for peer traffic."),
    value("initial-advertise-peer-urls", "http://localhost:2380", "List of this member's peer URLs to advertise to the rest of the cluster."),
    value("initial-cluster", "", "Initial cluster configuration for bootstrapping (default '${name}=${initial-advertise-peer-urls}')."),
    value("initial-cluster-state", "new", "Initial cluster state ('new' or 'existing')."),
    value("initial-cluster-token", "etcd-cluster", "Initial cluster token for the etcd cluster during bootstrap."),
    value("snapshot-count", "10000", "Number of committed transactions to trigger a snapshot to disk."),
    value("heartbeat-interval", "100", "Time (in milliseconds) of a heartbeat interval."),
    value("election-timeout", "1000", "Time (in milliseconds) for an election to timeout."),
    value("max-request-bytes", "1572864", "Maximum client request size in bytes the server will accept."),
    value("max-concurrent-streams", "4294967295", "Maximum concurrent streams that each client can open at a time."),
    value("max-txn-ops", "128", "Maximum number of operations permitted in a transaction."),
    value("auth-token", "simple", "Specify auth token specific options."),
    value("auth-token-ttl", "300", "The lifetime in seconds of the auth token."),
    value("bcrypt-cost", "10", "Specify bcrypt algorithm cost factor for auth password hashing."),
    value("quota-backend-bytes", "0", "Raise alarms when backend size exceeds the given quota (0 defaults to low space quota)."),
    value("auto-compaction-retention", "0", "Auto compaction retention length. 0 means disable auto compaction."),
    value("auto-compaction-mode", "periodic", "Interpret 'auto-compaction-retention' one of: periodic|revision. 'periodic' for duration based retention, defaulting to hours if no time unit is provided (e.g. '5m'). 'revision' for revision number based retention."),
    value("listen-metrics-urls", "", "List of URLs to listen on for the metrics and health endpoints."),
    value("metrics", "basic", "Set level of detail for exported metrics, specify 'extensive' to include server side grpc histogram metrics."),
    value("logger", "zap", "Currently only supports 'zap' for structured logging."),
    value("log-level", "info", "Configures log level. Only supports debug, info, warn, error, panic, or fatal."),
    value("log-outputs", "default", "Specify 'stdout' or 'stderr' to skip journald logging even when running under systemd, or list of comma separated output targets."),
    value("cert-file", "", "Path to the client server TLS cert file."),
    value("key-file", "", "Path to the client server TLS key file."),
    value("trusted-ca-file", "", "Path to the client server TLS trusted CA cert file."),
    boolean("client-cert-auth", "Enable client cert authentication."),
    value("client-crl-file", "", "Path to the client certificate revocation list file."),
    boolean("auto-tls", "Client TLS using generated certificates."),
    value("client-cert-allowed-hostname", "", "Allowed TLS hostname for client cert authentication."),
    value("peer-cert-file", "", "Path to the peer server TLS cert file."),
    value("peer-key-file", "", "Path to the peer server TLS key file."),
    value("peer-trusted-ca-file", "", "Path to the peer server TLS trusted CA file."),
    boolean("peer-client-cert-auth", "Enable peer client cert authentication."),
    value("peer-crl-file", "", "Path to the peer certificate revocation list file."),
    boolean("peer-auto-tls", "Peer TLS using generated certificates."),
    value("peer-cert-allowed-cn", "", "Allowed CN for inter peer authentication."),
    value("peer-cert-allowed-hostname", "", "Allowed TLS hostname for inter peer authentication."),
    value("cipher-suites", "", "Comma-separated list of supported TLS cipher suites between client/server and peers (empty will be auto-populated by Go)."),
    value("tls-min-version", "TLS1.2", "Minimum TLS version supported by etcd. Possible values: TLS1.2, TLS1.3."),
    value("tls-max-version", "", "Maximum TLS version supported by etcd. Possible values: TLS1.2, TLS1.3 (empty defers to Go)."),
    value("experimental-watch-progress-notify-interval", "10m0s", "Duration of periodic watch progress notifications."),
    boolean("experimental-enable-lease-checkpoint", "Enable to persist lease remaining TTL to prevent indefinite auto-renewal of long lived leases."),
    value("experimental-lease-checkpoint-interval", "5m0s", "Duration of time between two checkpoints of lease remaining TTLs."),
    boolean("experimental-initial-corrupt-check", "Enable to check data corruption before serving any client/peer traffic."),
    value("experimental-corrupt-check-time", "0s", "Duration of time between cluster corruption check passes."),
    hidden_value("experimental-auto-compaction-check-interval", "5m0s", "etcd-rs only: how often revision-mode auto compaction checks the revision (etcd: always 5m0s). For tests."),
    boolean_true("pre-vote", "Enable to run an additional Raft election phase."),
    boolean_true("strict-reconfig-check", "Reject reconfiguration requests that would cause quorum loss."),
    boolean("force-new-cluster", "Force to create a new one member cluster."),
    boolean("version", "Print the version and exit."),
    boolean("help", "Show this help and exit."),
];

/// Parses a non-negative Go `time.Duration` string: a sequence of decimal
/// numbers, each with a unit (ns, us, µs, ms, s, m, h), like "1h30m" or
/// "2.5s"; "0" alone (see `go_duration`).
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let nanos = gofmt::duration::parse(s).ok()?;
    u64::try_from(nanos).ok().map(Duration::from_nanos)
}

/// The flag names of one side's TLS settings.
struct TlsFlags {
    cert_file: &'static str,
    key_file: &'static str,
    trusted_ca_file: &'static str,
    client_cert_auth: &'static str,
    crl_file: &'static str,
    auto_tls: &'static str,
    allowed_cn: Option<&'static str>,
    allowed_hostname: &'static str,
}

const CLIENT_TLS_FLAGS: TlsFlags = TlsFlags {
    cert_file: "cert-file",
    key_file: "key-file",
    trusted_ca_file: "trusted-ca-file",
    client_cert_auth: "client-cert-auth",
    crl_file: "client-crl-file",
    auto_tls: "auto-tls",
    allowed_cn: None,
    allowed_hostname: "client-cert-allowed-hostname",
};

const PEER_TLS_FLAGS: TlsFlags = TlsFlags {
    cert_file: "peer-cert-file",
    key_file: "peer-key-file",
    trusted_ca_file: "peer-trusted-ca-file",
    client_cert_auth: "peer-client-cert-auth",
    crl_file: "peer-crl-file",
    auto_tls: "peer-auto-tls",
    allowed_cn: Some("peer-cert-allowed-cn"),
    allowed_hostname: "peer-cert-allowed-hostname",
};

/// Parses `args` (without the program name) with `env` as the environment,
/// or the config file they name.
pub fn parse(args: &[String], env: &HashMap<String, String>) -> Result<Command, ParseError> {
    let mut given: HashMap<&'static str, String> = HashMap::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" || !arg.starts_with('-') || arg == "-" {
            return Err(ConfigError(format!("'{arg}' is not a valid flag")).into());
        }
        let body = arg.trim_start_matches('-');
        if arg.starts_with("---") || body.is_empty() {
            return Err(ConfigError(format!("bad flag syntax: {arg}")).into());
        }
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        if name == "h" {
            return Ok(Command::PrintHelp);
        }
        let flag = FLAGS
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| ConfigError(format!("flag provided but not defined: -{name}")))?;
        let raw = match (flag.kind, inline) {
            (_, Some(v)) => v,
            (Kind::Bool, None) => "true".to_string(),
            (Kind::Value, None) => {
                let v = args
                    .get(i)
                    .ok_or_else(|| ConfigError(format!("flag needs an argument: -{name}")))?;
                i += 1;
                v.clone()
            }
        };
        if flag.kind == Kind::Bool {
            parse_bool(&raw).ok_or_else(|| bad_flag(&raw, name))?;
        }
        given.insert(flag.name, raw);
    }

    let lookup = Lookup { given: &given, env };
    if lookup.boolean("help")? {
        return Ok(Command::PrintHelp);
    }
    if lookup.boolean("version")? {
        return Ok(Command::PrintVersion);
    }
    // As in etcd, the variable counts even when the flag is given empty.
    let mut config_file = lookup.string("config-file");
    if config_file.is_empty() {
        config_file = env
            .get(&env_name("config-file"))
            .cloned()
            .unwrap_or_default();
    }
    if config_file.is_empty() {
        return lookup.build_all(false).map(|c| Command::Run(Box::new(c)));
    }
    // etcd: "other configuration command line flags and environment variables
    // will be ignored if provided".
    let path = PathBuf::from(&config_file);
    let file = crate::config::file::load(&path).map_err(ParseError::verify)?;
    let no_env = HashMap::new();
    let from_file = Lookup {
        given: &file.values,
        env: &no_env,
    };
    let mut config = from_file.build_all(true)?;
    config.config_file = Some(path);
    config.ignored_config_keys = file.ignored;
    Ok(Command::Run(Box::new(config)))
}

/// The usage text for `--help`.
pub fn usage() -> String {
    let mut out = String::from("Usage:\n\n  etcd [flags]\n    Start an etcd server.\n\n  etcd --version\n    Show the version of etcd.\n\n  etcd -h | --help\n    Show the help information about etcd.\n\nFlags:\n\n");
    for f in FLAGS.iter().filter(|f| !f.hidden) {
        let default = if f.kind == Kind::Bool || f.default.is_empty() {
            String::new()
        } else {
            format!(" (default '{}')", f.default)
        };
        out.push_str(&format!("  --{}\n    {}{}\n", f.name, f.help, default));
    }
    out
}

fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

fn bad_flag(raw: &str, name: &str) -> ConfigError {
    ConfigError(format!(
        "invalid value \"{raw}\" for flag -{name}: parse error"
    ))
}

fn env_name(flag: &str) -> String {
    format!("ETCD_{}", flag.to_uppercase().replace('-', "_"))
}

struct Lookup<'a> {
    given: &'a HashMap<&'static str, String>,
    env: &'a HashMap<String, String>,
}

impl Lookup<'_> {
    /// The whole configuration; errors of values from a config file are
    /// refusals as etcd reports them, not flag errors.
    fn build_all(&self, from_file: bool) -> Result<Config, ParseError> {
        let mut config = self.build().map_err(|e| {
            if from_file {
                ParseError::verify(e.0)
            } else {
                ParseError::Flag(e)
            }
        })?;
        let mode = self.string("auto-compaction-mode");
        if !matches!(
            mode.as_str(),
            "" | retention::MODE_PERIODIC | retention::MODE_REVISION
        ) {
            return Err(ParseError::verify(format!(
                "unknown auto-compaction-mode {}",
                gofmt::duration::quote(&mode)
            )));
        }
        config.auto_compaction =
            retention::parse_retention(&mode, &self.string("auto-compaction-retention")).map_err(
                |error| ParseError::Refused {
                    msg: "failed to start etcd",
                    error,
                },
            )?;
        Ok(config)
    }

    /// The raw value of a flag, whether it was set explicitly, and how to name it in errors.
    fn raw(&self, name: &'static str) -> (String, Option<String>) {
        if let Some(v) = self.given.get(name) {
            return (v.clone(), Some(format!("flag -{name}")));
        }
        let key = env_name(name);
        if let Some(v) = self.env.get(&key) {
            return (v.clone(), Some(key));
        }
        let default = FLAGS
            .iter()
            .find(|f| f.name == name)
            .map_or("", |f| f.default);
        (default.to_string(), None)
    }

    fn is_set(&self, name: &'static str) -> bool {
        self.raw(name).1.is_some()
    }

    fn string(&self, name: &'static str) -> String {
        self.raw(name).0
    }

    fn parsed<T: std::str::FromStr>(&self, name: &'static str) -> Result<T, ConfigError> {
        let (raw, source) = self.raw(name);
        raw.trim().parse().map_err(|_| {
            let source = source.unwrap_or_else(|| format!("flag -{name}"));
            ConfigError(format!("invalid value \"{raw}\" for {source}: parse error"))
        })
    }

    fn boolean(&self, name: &'static str) -> Result<bool, ConfigError> {
        let (raw, source) = self.raw(name);
        parse_bool(&raw).ok_or_else(|| {
            let source = source.unwrap_or_else(|| format!("flag -{name}"));
            ConfigError(format!("invalid value \"{raw}\" for {source}: parse error"))
        })
    }

    /// A Go duration ("5m0s", "500ms", "1h30m").
    fn duration(&self, name: &'static str) -> Result<Duration, ConfigError> {
        let (raw, source) = self.raw(name);
        parse_go_duration(raw.trim()).ok_or_else(|| {
            let source = source.unwrap_or_else(|| format!("flag -{name}"));
            ConfigError(format!("invalid value \"{raw}\" for {source}: parse error"))
        })
    }

    fn path(&self, name: &'static str) -> Option<PathBuf> {
        Some(self.string(name))
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
    }

    fn tls_info(&self, flags: &TlsFlags) -> Result<TlsInfo, ConfigError> {
        Ok(TlsInfo {
            cert_file: self.path(flags.cert_file),
            key_file: self.path(flags.key_file),
            trusted_ca_file: self.path(flags.trusted_ca_file),
            client_cert_auth: self.boolean(flags.client_cert_auth)?,
            crl_file: self.path(flags.crl_file),
            auto_tls: self.boolean(flags.auto_tls)?,
            allowed_cn: flags
                .allowed_cn
                .map(|f| self.string(f))
                .filter(|s| !s.is_empty()),
            allowed_hostname: Some(self.string(flags.allowed_hostname)).filter(|s| !s.is_empty()),
            cipher_suites: self
                .string("cipher-suites")
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            min_version: self.string("tls-min-version"),
            max_version: self.string("tls-max-version"),
        })
    }

    fn urls(&self, name: &'static str) -> Result<Vec<String>, ConfigError> {
        let raw = self.string(name);
        let urls: Vec<String> = raw
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        for u in &urls {
            parse_url(u).map_err(|why| {
                ConfigError(format!("invalid value \"{raw}\" for flag -{name}: {why}"))
            })?;
        }
        Ok(urls)
    }

    fn build(&self) -> Result<Config, ConfigError> {
        let name = self.string("name");
        let data_dir = match self.string("data-dir") {
            d if d.is_empty() => PathBuf::from(format!("{name}.etcd")),
            d => PathBuf::from(d),
        };
        let wal_dir = Some(self.string("wal-dir"))
            .filter(|d| !d.is_empty())
            .map(PathBuf::from);
        let initial_advertise_peer_urls = self.urls("initial-advertise-peer-urls")?;
        let initial_cluster = if self.is_set("initial-cluster") {
            parse_initial_cluster(&self.string("initial-cluster"))?
        } else {
            vec![(name.clone(), initial_advertise_peer_urls.clone())]
        };
        let initial_cluster_state = match self.string("initial-cluster-state").as_str() {
            "new" => ClusterState::New,
            "existing" => ClusterState::Existing,
            other => {
                return Err(ConfigError(format!(
                    "invalid value \"{other}\" for flag -initial-cluster-state: valid values are \"new\", \"existing\""
                )))
            }
        };
        let logger = self.string("logger");
        if logger != "zap" {
            return Err(ConfigError(format!(
                "invalid value \"{logger}\" for flag -logger: only 'zap' is supported"
            )));
        }
        let log_level = match self.string("log-level").as_str() {
            "debug" => tracing::Level::DEBUG,
            "info" => tracing::Level::INFO,
            "warn" => tracing::Level::WARN,
            "error" | "panic" | "fatal" => tracing::Level::ERROR,
            other => {
                return Err(ConfigError(format!("unrecognized level: \"{other}\"")));
            }
        };
        let log_outputs = self
            .string("log-outputs")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();

        let config = Config {
            name,
            data_dir,
            wal_dir,
            listen_client_urls: self.urls("listen-client-urls")?,
            advertise_client_urls: self.urls("advertise-client-urls")?,
            listen_peer_urls: self.urls("listen-peer-urls")?,
            initial_advertise_peer_urls,
            initial_cluster,
            initial_cluster_state,
            initial_cluster_token: self.string("initial-cluster-token"),
            snapshot_count: self.parsed("snapshot-count")?,
            heartbeat_interval_ms: self.parsed("heartbeat-interval")?,
            election_timeout_ms: self.parsed("election-timeout")?,
            max_request_bytes: self.parsed("max-request-bytes")?,
            max_txn_ops: self.parsed("max-txn-ops")?,
            auth_token: self.string("auth-token"),
            auth_token_ttl_secs: self.parsed("auth-token-ttl")?,
            bcrypt_cost: self.parsed("bcrypt-cost")?,
            // etcd leaves streams per connection unbounded by default; we bound
            // them unless the flag asks otherwise.
            max_concurrent_streams: if self.is_set("max-concurrent-streams") {
                self.parsed("max-concurrent-streams")?
            } else {
                crate::limits::STREAMS_PER_CONNECTION_MAX
            },
            quota_backend_bytes: self.parsed("quota-backend-bytes")?,
            client_tls: self.tls_info(&CLIENT_TLS_FLAGS)?,
            peer_tls: self.tls_info(&PEER_TLS_FLAGS)?,
            pre_vote: self.boolean("pre-vote")?,
            watch_progress_notify_interval: self
                .duration("experimental-watch-progress-notify-interval")?,
            lease_checkpointing: self.boolean("experimental-enable-lease-checkpoint")?,
            lease_checkpoint_interval: self.duration("experimental-lease-checkpoint-interval")?,
            strict_reconfig_check: self.boolean("strict-reconfig-check")?,
            initial_corrupt_check: self.boolean("experimental-initial-corrupt-check")?,
            corrupt_check_interval: self.duration("experimental-corrupt-check-time")?,
            force_new_cluster: self.boolean("force-new-cluster")?,
            listen_metrics_urls: self.urls("listen-metrics-urls")?,
            metrics: MetricsLevel::from_flag(&self.string("metrics")),
            log_level,
            log_outputs,
            auto_compaction: None,
            auto_compaction_check_interval: self
                .duration("experimental-auto-compaction-check-interval")?,
            config_file: None,
            ignored_config_keys: Vec::new(),
        };
        validate(&config)?;
        Ok(config)
    }
}

/// etcd's cross-flag checks.
fn validate(c: &Config) -> Result<(), ConfigError> {
    if c.heartbeat_interval_ms == 0 {
        return Err(ConfigError("--heartbeat-interval must be > 0".into()));
    }
    if 5 * c.heartbeat_interval_ms > c.election_timeout_ms {
        return Err(ConfigError(format!(
            "--election-timeout[{}ms] should be at least as 5 times as --heartbeat-interval[{}ms]",
            c.election_timeout_ms, c.heartbeat_interval_ms
        )));
    }
    if c.election_timeout_ms > 50_000 {
        return Err(ConfigError(format!(
            "--election-timeout[{}ms] is too long, and should be set less than 50000ms",
            c.election_timeout_ms
        )));
    }
    if c.max_txn_ops == 0 {
        return Err(ConfigError("--max-txn-ops must be > 0".into()));
    }
    if c.max_request_bytes == 0 {
        return Err(ConfigError("--max-request-bytes must be > 0".into()));
    }
    if !c.initial_cluster.iter().any(|(n, _)| n == &c.name) {
        return Err(ConfigError(format!(
            "couldn't find local name \"{}\" in the initial cluster configuration",
            c.name
        )));
    }
    Ok(())
}

/// `--initial-cluster` parsed, with the flag named in its errors.
fn parse_initial_cluster(raw: &str) -> Result<Vec<(String, Vec<String>)>, ConfigError> {
    parse_urls_map(raw).map_err(|why| {
        ConfigError(format!(
            "invalid value \"{raw}\" for flag -initial-cluster: {why}"
        ))
    })
}

/// `--metrics`: etcd exports gRPC handling-time histograms only with `extensive`
/// (any other value is `basic`, as etcd treats it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsLevel {
    Basic,
    Extensive,
}

impl MetricsLevel {
    pub fn from_flag(value: &str) -> MetricsLevel {
        if value == "extensive" {
            MetricsLevel::Extensive
        } else {
            MetricsLevel::Basic
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let d = |s| parse_go_duration(s);
        assert_eq!(d("5m0s"), Some(Duration::from_secs(300)));
        assert_eq!(d("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(d("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(d("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(d("0"), Some(Duration::ZERO));
        assert_eq!(d("5"), None);
        assert_eq!(d("5x"), None);
        assert_eq!(d(""), None);
    }

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        match parse_all(args, env) {
            Ok(c) => Ok(c),
            Err(ParseError::Flag(e)) => Err(e),
            Err(other) => panic!("not a flag error: {other:?}"),
        }
    }

    /// `etcd <args>` with `env` as the environment (also used by `config_file`'s tests).
    pub(crate) fn parse_all(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ParseError> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        match parse(&args, &env)? {
            Command::Run(c) => Ok(*c),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn defaults_are_etcds() {
        let c = run(&[], &[]).unwrap();
        assert_eq!(c.name, "default");
        assert_eq!(c.data_dir, PathBuf::from("default.etcd"));
        assert_eq!(c.listen_client_urls, vec!["http://localhost:2379"]);
        assert_eq!(
            c.initial_cluster,
            vec![(
                "default".to_string(),
                vec!["http://localhost:2380".to_string()]
            )]
        );
        assert_eq!(c.initial_cluster_token, "etcd-cluster");
        assert_eq!((c.max_request_bytes, c.max_txn_ops), (1572864, 128));
        assert_eq!(
            (c.heartbeat_interval_ms, c.election_timeout_ms),
            (100, 1000)
        );
        assert_eq!(c.request_timeout(), Duration::from_secs(7));
        assert!(c.listen_metrics_urls.is_empty());
        assert_eq!(c.metrics, MetricsLevel::Basic);
    }

    #[test]
    fn metrics_flags() {
        let c = run(
            &[
                "--metrics=extensive",
                "--listen-metrics-urls=http://127.0.0.1:1,https://127.0.0.1:2",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(c.metrics, MetricsLevel::Extensive);
        assert_eq!(c.listen_metrics_urls.len(), 2);
        // Any other level is etcd's basic.
        let c = run(&[], &[("ETCD_METRICS", "verbose")]).unwrap();
        assert_eq!(c.metrics, MetricsLevel::Basic);
        assert!(run(&["--listen-metrics-urls=ftp://a:1"], &[]).is_err());
    }

    #[test]
    fn go_flag_syntax() {
        let c = run(&["-name", "n1", "--max-txn-ops=7", "--data-dir", "/x"], &[]).unwrap();
        assert_eq!((c.name.as_str(), c.max_txn_ops), ("n1", 7));
        assert_eq!(c.data_dir, PathBuf::from("/x"));
        assert_eq!(c.initial_cluster[0].0, "n1");
    }

    #[test]
    fn concurrent_streams_are_bounded_unless_asked() {
        let c = run(&[], &[]).unwrap();
        assert_eq!(
            c.max_concurrent_streams,
            crate::limits::STREAMS_PER_CONNECTION_MAX
        );
        let c = run(&["--max-concurrent-streams=5000"], &[]).unwrap();
        assert_eq!(c.max_concurrent_streams, 5000);
        let c = run(&[], &[("ETCD_MAX_CONCURRENT_STREAMS", "3")]).unwrap();
        assert_eq!(c.max_concurrent_streams, 3);
    }

    #[test]
    fn env_falls_back_and_flags_win() {
        let c = run(
            &["--snapshot-count=5"],
            &[("ETCD_SNAPSHOT_COUNT", "9"), ("ETCD_NAME", "e")],
        )
        .unwrap();
        assert_eq!((c.snapshot_count, c.name.as_str()), (5, "e"));
    }

    #[test]
    fn errors_are_one_line_and_name_the_flag() {
        type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (&["--foo"], &[], "flag provided but not defined: -foo"),
            (&["--max-txn-ops=abc"], &[], "invalid value \"abc\" for flag -max-txn-ops: parse error"),
            (&["--version=maybe"], &[], "invalid value \"maybe\" for flag -version: parse error"),
            (&[], &[("ETCD_SNAPSHOT_COUNT", "x")], "invalid value \"x\" for ETCD_SNAPSHOT_COUNT: parse error"),
            (&["--name"], &[], "flag needs an argument: -name"),
            (
                &["--name=x", "--initial-cluster=a=http://h:1"],
                &[],
                "couldn't find local name \"x\" in the initial cluster configuration",
            ),
            (&["--initial-cluster-state=old"], &[], "invalid value \"old\" for flag -initial-cluster-state: valid values are \"new\", \"existing\""),
        ];
        for (args, env, want) in cases {
            let err = run(args, env).unwrap_err();
            assert_eq!(err.0, *want, "{args:?}");
            assert!(!err.0.contains('\n'));
        }
    }

    #[test]
    fn auto_compaction_flags_and_env() {
        use retention::Retention;
        let minute = Duration::from_secs(60);
        let c = run(&[], &[]).unwrap();
        assert_eq!(c.auto_compaction, None);
        assert_eq!(c.auto_compaction_check_interval, 5 * minute);
        let c = run(&["--auto-compaction-retention=1h30m"], &[]).unwrap();
        assert_eq!(c.auto_compaction, Some(Retention::Periodic(90 * minute)));
        let c = run(&[], &[("ETCD_AUTO_COMPACTION_RETENTION", "24")]).unwrap();
        assert_eq!(
            c.auto_compaction,
            Some(Retention::Periodic(24 * 60 * minute))
        );
        let c = run(
            &[
                "--auto-compaction-mode=revision",
                "--auto-compaction-retention=1000",
                "--experimental-auto-compaction-check-interval=200ms",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(c.auto_compaction, Some(Retention::Revision(1000)));
        assert_eq!(c.auto_compaction_check_interval, Duration::from_millis(200));

        assert_eq!(
            parse_all(&["--auto-compaction-mode=foo"], &[]).unwrap_err(),
            ParseError::Refused {
                msg: "failed to verify flags",
                error: "unknown auto-compaction-mode \"foo\"".into()
            }
        );
        assert_eq!(
            parse_all(&["--auto-compaction-retention=abc"], &[]).unwrap_err(),
            ParseError::Refused {
                msg: "failed to start etcd",
                error: "error parsing CompactionRetention: time: invalid duration \"abc\"".into()
            }
        );
        assert_eq!(
            run(&["--experimental-auto-compaction-check-interval=5"], &[]).unwrap_err().0,
            "invalid value \"5\" for flag -experimental-auto-compaction-check-interval: parse error"
        );
    }

    #[test]
    fn help_hides_our_test_knobs() {
        let help = usage();
        assert!(help.contains("--auto-compaction-retention\n"));
        assert!(help.contains("--auto-compaction-mode\n"));
        assert!(help.contains("--config-file\n"));
        assert!(!help.contains("experimental-auto-compaction-check-interval"));
    }

    #[test]
    fn initial_cluster_groups_urls_by_name() {
        let c = run(
            &[
                "--name=b",
                "--initial-cluster=a=http://h:1,b=http://h:2,a=http://h:3",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(
            c.initial_cluster,
            vec![
                (
                    "a".to_string(),
                    vec!["http://h:1".to_string(), "http://h:3".to_string()]
                ),
                ("b".to_string(), vec!["http://h:2".to_string()])
            ]
        );
    }

    #[test]
    fn url_parsing() {
        assert_eq!(parse_url("http://127.0.0.1:2379").unwrap().port, 2379);
        assert_eq!(parse_url("https://[::1]:1").unwrap().host, "::1");
        assert!(parse_url("ftp://a:1").is_err());
        assert!(parse_url("http://a").is_err());
    }
}
