//! The flags every command takes (etcdctl's persistent flags), each also
//! read from its `ETCDCTL_*` environment variable when not given, as
//! etcd's `flags.SetPflagsFromEnv` does.

use std::time::Duration;

use clap::Args;

use crate::error::{CtlError, CtlResult};
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
        env = "ETCDCTL_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:2379"
    )]
    pub endpoints: Vec<String>,

    /// enable client-side debug logging
    #[arg(long, global = true, env = "ETCDCTL_DEBUG", value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true")]
    pub debug: bool,

    /// set the output format (fields, json, protobuf, simple, table)
    #[arg(
        short = 'w',
        long = "write-out",
        global = true,
        env = "ETCDCTL_WRITE_OUT",
        default_value = "simple"
    )]
    pub write_out: String,

    /// print byte strings as hex encoded strings
    #[arg(long, global = true, env = "ETCDCTL_HEX", value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true")]
    pub hex: bool,

    /// dial timeout for client connections
    #[arg(long, global = true, env = "ETCDCTL_DIAL_TIMEOUT", value_parser = parse_go_duration, default_value = "2s")]
    pub dial_timeout: Duration,

    /// timeout for short running command (excluding dial timeout)
    #[arg(long, global = true, env = "ETCDCTL_COMMAND_TIMEOUT", value_parser = parse_go_duration, default_value = "5s")]
    pub command_timeout: Duration,

    /// keepalive time for client connections
    #[arg(long, global = true, env = "ETCDCTL_KEEPALIVE_TIME", value_parser = parse_go_duration, default_value = "2s")]
    pub keepalive_time: Duration,

    /// keepalive timeout for client connections
    #[arg(long, global = true, env = "ETCDCTL_KEEPALIVE_TIMEOUT", value_parser = parse_go_duration, default_value = "6s")]
    pub keepalive_timeout: Duration,

    /// disable transport security for client connections
    #[arg(long, global = true, env = "ETCDCTL_INSECURE_TRANSPORT", value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_value = "true", default_missing_value = "true")]
    pub insecure_transport: bool,

    /// accept insecure SRV records describing cluster endpoints
    #[arg(long, global = true, env = "ETCDCTL_INSECURE_DISCOVERY", value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_value = "true", default_missing_value = "true")]
    pub insecure_discovery: bool,

    /// skip server certificate verification (CAUTION: this option should be enabled only for testing purposes)
    #[arg(long, global = true, env = "ETCDCTL_INSECURE_SKIP_TLS_VERIFY", value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true")]
    pub insecure_skip_tls_verify: bool,

    /// identify secure client using this TLS certificate file
    #[arg(long, global = true, env = "ETCDCTL_CERT")]
    pub cert: Option<String>,

    /// identify secure client using this TLS key file
    #[arg(long, global = true, env = "ETCDCTL_KEY")]
    pub key: Option<String>,

    /// verify certificates of TLS-enabled secure servers using this CA bundle
    #[arg(long, global = true, env = "ETCDCTL_CACERT")]
    pub cacert: Option<String>,

    /// username[:password] for authentication (prompt if password is not supplied)
    #[arg(long, global = true, env = "ETCDCTL_USER")]
    pub user: Option<String>,

    /// password for authentication (if this option is used, --user option shouldn't include password)
    #[arg(long, global = true, env = "ETCDCTL_PASSWORD")]
    pub password: Option<String>,

    /// domain name to query for SRV records describing cluster endpoints
    #[arg(short = 'd', long, global = true, env = "ETCDCTL_DISCOVERY_SRV")]
    pub discovery_srv: Option<String>,

    /// service name to query when using DNS discovery
    #[arg(long, global = true, env = "ETCDCTL_DISCOVERY_SRV_NAME")]
    pub discovery_srv_name: Option<String>,
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

    /// The connection settings, checked as etcdctl checks them.
    pub fn client_config(&self) -> CtlResult<ClientConfig> {
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
            command_timeout: self.command_timeout,
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
        let password = crate::prompt::password("Password: ").map_err(CtlError::error)?;
        Ok(Some(Credentials { user, password }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
