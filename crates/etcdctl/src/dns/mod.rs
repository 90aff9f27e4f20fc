//! A small DNS stub resolver for SRV records, as Go's pure-Go resolver
//! (which etcdctl uses) does it, so `--discovery-srv` finds the same
//! endpoints and fails with the same words.
//!
//! - Configuration from `/etc/resolv.conf`: `nameserver`, `search`/`domain`,
//!   `options ndots: timeout: attempts: rotate` (Go's defaults: 127.0.0.1
//!   and ::1, ndots 1, 5 s, 2 attempts). `ETCD_RS_TEST_DNS_SERVER=host:port`
//!   replaces the servers; it exists for tests, which run a DNS server on a
//!   loopback port (resolv.conf cannot name a port).
//! - A query per candidate name (Go's `nameList`: the name as given when it
//!   has `ndots` dots, then with each search domain), per server, per
//!   attempt; UDP with an EDNS(0) record (1232 bytes), TCP when truncated.
//! - Errors read as Go's `*net.DNSError`: `lookup <name> on <server>:
//!   no such host` (NXDOMAIN, or no SRV answer), `server misbehaving`
//!   (other rcodes), `lame referral`, `read udp <local>-><server>: i/o
//!   timeout`.
//! - Answers are ordered as Go's `byPriorityWeight`: by priority, then
//!   shuffled by weight (RFC 2782) within a priority.
//!
//! Left out: CNAME chasing (Go skips answers for other names too), DNSSEC,
//! `/etc/hosts` (SRV records are never there), `options use-vc`.

use std::fmt;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

mod message;

pub use message::Srv;
use message::{
    decode_response, encode_query, Response, EDNS_UDP_SIZE, RCODE_NAME_ERROR, RCODE_SUCCESS,
    TYPE_SRV,
};

/// The environment variable tests use to point the resolver at their server.
pub const TEST_SERVER_ENV: &str = "ETCD_RS_TEST_DNS_SERVER";

/// A failed lookup, worded as Go's `net.DNSError`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupError {
    pub name: String,
    pub server: Option<String>,
    pub reason: String,
}

impl fmt::Display for LookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.server {
            Some(server) => write!(f, "lookup {} on {server}: {}", self.name, self.reason),
            None => write!(f, "lookup {}: {}", self.name, self.reason),
        }
    }
}

const NO_SUCH_HOST: &str = "no such host";

/// The resolver's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub servers: Vec<SocketAddr>,
    /// Absolute search domains (ending in a dot).
    pub search: Vec<String>,
    pub ndots: usize,
    pub timeout: Duration,
    pub attempts: u32,
    pub rotate: bool,
}

impl Config {
    /// `/etc/resolv.conf` (Go's defaults when it cannot be read), with the
    /// test override applied.
    pub fn system() -> Config {
        let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let mut config = Config::parse(&text);
        if let Some(server) = std::env::var(TEST_SERVER_ENV)
            .ok()
            .and_then(|s| s.parse::<SocketAddr>().ok())
        {
            config.servers = vec![server];
        }
        config
    }

    /// Go's `dnsReadConfig` for the options it keeps.
    pub fn parse(text: &str) -> Config {
        let mut config = Config {
            servers: Vec::new(),
            search: Vec::new(),
            ndots: 1,
            timeout: Duration::from_secs(5),
            attempts: 2,
            rotate: false,
        };
        for line in text.lines() {
            let line = line.trim_start();
            if line.starts_with(['#', ';']) {
                continue;
            }
            let mut fields = line.split_whitespace();
            match fields.next() {
                Some("nameserver") => {
                    // Go keeps at most three servers, each an IP address.
                    if let Some(ip) = fields.next().and_then(|f| f.parse::<IpAddr>().ok()) {
                        if config.servers.len() < 3 {
                            config.servers.push(SocketAddr::new(ip, 53));
                        }
                    }
                }
                Some("domain") => {
                    if let Some(domain) = fields.next() {
                        config.search = vec![absolute(domain)];
                    }
                }
                Some("search") => {
                    config.search = fields.filter(|f| *f != ".").map(absolute).collect();
                }
                Some("options") => {
                    for option in fields {
                        let number = |prefix: &str| {
                            option
                                .strip_prefix(prefix)
                                .and_then(|n| n.parse::<u64>().ok())
                        };
                        if let Some(n) = number("ndots:") {
                            config.ndots = n.min(15) as usize;
                        } else if let Some(n) = number("timeout:") {
                            config.timeout = Duration::from_secs(n.max(1));
                        } else if let Some(n) = number("attempts:") {
                            config.attempts = n.clamp(1, 5) as u32;
                        } else if option == "rotate" {
                            config.rotate = true;
                        }
                    }
                }
                _ => {}
            }
        }
        if config.servers.is_empty() {
            config.servers = vec![
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53),
                SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 53),
            ];
        }
        config
    }

    /// Go's `nameList`: the absolute names to try for `name`, in order.
    pub fn name_list(&self, name: &str) -> Vec<String> {
        let rooted = name.ends_with('.');
        if name.len() > 254 || (name.len() == 254 && rooted) {
            return Vec::new();
        }
        if rooted {
            return vec![name.to_string()];
        }
        let has_ndots = name.matches('.').count() >= self.ndots;
        let name = format!("{name}.");
        let mut names = Vec::new();
        if has_ndots {
            names.push(name.clone());
        }
        for suffix in &self.search {
            if name.len() + suffix.len() <= 254 {
                names.push(format!("{name}{suffix}"));
            }
        }
        if !has_ndots {
            names.push(name);
        }
        names
    }
}

fn absolute(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

/// Go's `isDomainName`: labels of letters, digits, `_` and `-` (not at a
/// label's ends), at most 63 bytes each and 254 in all.
pub fn is_domain_name(s: &str) -> bool {
    if s.is_empty() || s.len() > 254 {
        return false;
    }
    if s == "." {
        return true;
    }
    let body = s.strip_suffix('.').unwrap_or(s);
    body.split('.').all(|label| {
        let bytes = label.as_bytes();
        !bytes.is_empty()
            && bytes.len() <= 63
            && bytes[0] != b'-'
            && bytes[bytes.len() - 1] != b'-'
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
    })
}

/// Go's `LookupSRV(service, proto, domain)` on `config`.
pub fn lookup_srv(
    config: &Config,
    service: &str,
    proto: &str,
    domain: &str,
) -> Result<Vec<Srv>, LookupError> {
    let name = format!("_{service}._{proto}.{domain}");
    let not_found = |server: Option<String>| LookupError {
        name: name.clone(),
        server,
        reason: NO_SUCH_HOST.into(),
    };
    if !is_domain_name(&name) {
        return Err(not_found(None));
    }
    let mut last = not_found(None);
    for fqdn in config.name_list(&name) {
        match try_one_name(config, &fqdn) {
            Ok(mut srvs) => {
                order_by_priority_weight(&mut srvs, &mut seed());
                return Ok(srvs);
            }
            Err(mut e) => {
                // Go reports the name as asked, not the suffixed one.
                e.name = name.clone();
                last = e;
            }
        }
    }
    Err(last)
}

/// Asks each server in turn, `attempts` times over, until one answers.
fn try_one_name(config: &Config, fqdn: &str) -> Result<Vec<Srv>, LookupError> {
    let mut last = None;
    let offset = if config.rotate {
        (seed() as usize) % config.servers.len().max(1)
    } else {
        0
    };
    for _ in 0..config.attempts {
        for j in 0..config.servers.len() {
            let server = config.servers[(offset + j) % config.servers.len()];
            let fail = |reason: String| LookupError {
                name: fqdn.to_string(),
                server: Some(server.to_string()),
                reason,
            };
            let resp = match exchange(server, fqdn, config.timeout) {
                Ok(resp) => resp,
                Err(reason) => {
                    last = Some(fail(reason));
                    continue;
                }
            };
            if resp.rcode == RCODE_NAME_ERROR {
                // The name does not exist: other servers will not know better.
                return Err(fail(NO_SUCH_HOST.into()));
            }
            if resp.rcode == RCODE_SUCCESS
                && !resp.authoritative
                && !resp.recursion_available
                && resp.answers.is_empty()
            {
                last = Some(fail("lame referral".into()));
                continue;
            }
            if resp.rcode != RCODE_SUCCESS {
                last = Some(fail("server misbehaving".into()));
                continue;
            }
            let srvs: Vec<Srv> = resp
                .answers
                .iter()
                .filter(|r| r.name.eq_ignore_ascii_case(fqdn))
                .filter_map(|r| r.srv.clone())
                .collect();
            if resp.answers.iter().all(|r| r.rtype != TYPE_SRV) {
                return Err(fail(NO_SUCH_HOST.into()));
            }
            return Ok(srvs);
        }
    }
    Err(last.unwrap_or(LookupError {
        name: fqdn.to_string(),
        server: None,
        reason: NO_SUCH_HOST.into(),
    }))
}

/// One question to one server: UDP, then TCP if the answer was truncated.
fn exchange(server: SocketAddr, fqdn: &str, timeout: Duration) -> Result<Response, String> {
    let id = (seed() & 0xffff) as u16;
    let query = encode_query(id, fqdn, TYPE_SRV).map_err(|_| "cannot marshal DNS message")?;
    let resp = exchange_udp(server, id, fqdn, &query, timeout)?;
    if !resp.truncated {
        return Ok(resp);
    }
    let resp = exchange_tcp(server, id, fqdn, &query, timeout)?;
    if resp.truncated {
        return Err("no answer from DNS server".into());
    }
    Ok(resp)
}

fn matches_query(resp: &Response, id: u16, fqdn: &str) -> bool {
    resp.is_response
        && resp.id == id
        && resp
            .question
            .as_ref()
            .is_some_and(|(name, qtype)| *qtype == TYPE_SRV && name.eq_ignore_ascii_case(fqdn))
}

fn exchange_udp(
    server: SocketAddr,
    id: u16,
    fqdn: &str,
    query: &[u8],
    timeout: Duration,
) -> Result<Response, String> {
    let local: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).map_err(|e| format!("dial udp {server}: {e}"))?;
    socket
        .connect(server)
        .map_err(|e| format!("dial udp {server}: {e}"))?;
    let here = socket
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let io_error = |op: &str, e: std::io::Error| {
        let reason = match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => "i/o timeout".into(),
            _ => e.to_string(),
        };
        format!("{op} udp {here}->{server}: {reason}")
    };
    socket.send(query).map_err(|e| io_error("write", e))?;
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; usize::from(EDNS_UDP_SIZE).max(512)];
    // Replies that do not match the query (late or forged) are skipped
    // until the deadline, as Go does.
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io_error("read", std::io::ErrorKind::TimedOut.into()));
        }
        socket
            .set_read_timeout(Some(left))
            .map_err(|e| io_error("read", e))?;
        let n = socket.recv(&mut buf).map_err(|e| io_error("read", e))?;
        match decode_response(&buf[..n]) {
            Ok(resp) if matches_query(&resp, id, fqdn) => return Ok(resp),
            _ => continue,
        }
    }
}

fn exchange_tcp(
    server: SocketAddr,
    id: u16,
    fqdn: &str,
    query: &[u8],
    timeout: Duration,
) -> Result<Response, String> {
    let mut stream = TcpStream::connect_timeout(&server, timeout)
        .map_err(|e| format!("dial tcp {server}: {e}"))?;
    let here = stream
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let io_error = |op: &str, e: std::io::Error| {
        let reason = match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => "i/o timeout".into(),
            _ => e.to_string(),
        };
        format!("{op} tcp {here}->{server}: {reason}")
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    stream
        .write_all(&framed)
        .map_err(|e| io_error("write", e))?;
    let mut len = [0u8; 2];
    stream
        .read_exact(&mut len)
        .map_err(|e| io_error("read", e))?;
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream
        .read_exact(&mut msg)
        .map_err(|e| io_error("read", e))?;
    match decode_response(&msg) {
        Ok(resp) if matches_query(&resp, id, fqdn) => Ok(resp),
        _ => Err("cannot unmarshal DNS message".into()),
    }
}

/// A seed for query ids and the weighted shuffle (not for secrets: DNS ids
/// only need to be unpredictable to other hosts, which std's random
/// hasher keys provide).
fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.finish()
}

/// Go's `byPriorityWeight.sort`: ascending priority (then weight), and
/// within one priority a weighted random order (RFC 2782).
pub fn order_by_priority_weight(srvs: &mut [Srv], rng: &mut u64) {
    srvs.sort_by_key(|s| (s.priority, s.weight));
    let mut start = 0;
    while start < srvs.len() {
        let end = srvs[start..]
            .iter()
            .position(|s| s.priority != srvs[start].priority)
            .map_or(srvs.len(), |n| start + n);
        shuffle_by_weight(&mut srvs[start..end], rng);
        start = end;
    }
}

fn shuffle_by_weight(mut srvs: &mut [Srv], rng: &mut u64) {
    let mut sum: u64 = srvs.iter().map(|s| u64::from(s.weight)).sum();
    while sum > 0 && srvs.len() > 1 {
        // xorshift64: enough for a load-spreading order.
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        let pick = *rng % sum;
        let mut running = 0;
        for i in 0..srvs.len() {
            running += u64::from(srvs[i].weight);
            if running > pick {
                srvs.swap(0, i);
                break;
            }
        }
        sum -= u64::from(srvs[0].weight);
        srvs = &mut srvs[1..];
    }
}

#[cfg(test)]
mod tests {
    use super::message::{decode_name, srv_response};
    use super::*;

    #[test]
    fn resolv_conf_and_name_list() {
        let c = Config::parse(
            "# comment\nnameserver 10.0.0.1\nnameserver bogus\nsearch a.test b.test\n\
             options ndots:2 timeout:1 attempts:3 rotate\n",
        );
        assert_eq!(c.servers, vec!["10.0.0.1:53".parse().unwrap()]);
        assert_eq!(c.search, vec!["a.test.".to_string(), "b.test.".to_string()]);
        assert_eq!(
            (c.ndots, c.timeout, c.attempts, c.rotate),
            (2, Duration::from_secs(1), 3, true)
        );
        assert_eq!(
            c.name_list("x.y"),
            vec!["x.y.a.test.", "x.y.b.test.", "x.y."]
        );
        assert_eq!(
            c.name_list("x.y.z"),
            vec!["x.y.z.", "x.y.z.a.test.", "x.y.z.b.test."]
        );
        assert_eq!(c.name_list("rooted."), vec!["rooted."]);
        assert_eq!(Config::parse("").servers.len(), 2);
    }

    #[test]
    fn domain_names() {
        assert!(is_domain_name("_etcd-client._tcp.example.com"));
        assert!(!is_domain_name("_etcd-client._tcp.bad domain"));
        assert!(!is_domain_name("a..b"));
        assert!(!is_domain_name("-a.b"));
    }

    #[test]
    fn priority_then_weight() {
        let srv = |p, w, t: &str| Srv {
            target: t.into(),
            port: 1,
            priority: p,
            weight: w,
        };
        for seed in 1..50u64 {
            let mut rng = seed;
            let mut v = vec![
                srv(2, 0, "c"),
                srv(1, 5, "a"),
                srv(1, 0, "b"),
                srv(3, 1, "d"),
            ];
            order_by_priority_weight(&mut v, &mut rng);
            // The zero-weight record of priority 1 always comes last in it.
            let names: Vec<&str> = v.iter().map(|s| s.target.as_str()).collect();
            assert_eq!(names, ["a", "b", "c", "d"]);
        }
    }

    #[test]
    fn errors_read_as_go() {
        let e = LookupError {
            name: "_etcd-client._tcp.x".into(),
            server: Some("10.0.0.1:53".into()),
            reason: NO_SUCH_HOST.into(),
        };
        assert_eq!(
            e.to_string(),
            "lookup _etcd-client._tcp.x on 10.0.0.1:53: no such host"
        );
    }

    #[test]
    fn lookup_against_a_loopback_server() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        let answering = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            for _ in 0..2 {
                let (n, from) = server.recv_from(&mut buf).unwrap();
                let (name, _) = decode_name(&buf[..n], 12).unwrap();
                let reply = if name.starts_with("_etcd-client-ssl.") {
                    srv_response(&buf[..n], RCODE_NAME_ERROR, &[])
                } else {
                    srv_response(&buf[..n], 0, &[(0, 0, 2379, "m1.example.com.")])
                };
                server.send_to(&reply, from).unwrap();
            }
        });
        let config = Config {
            servers: vec![addr],
            search: Vec::new(),
            ndots: 1,
            timeout: Duration::from_secs(5),
            attempts: 1,
            rotate: false,
        };
        let e = lookup_srv(&config, "etcd-client-ssl", "tcp", "example.com").unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("lookup _etcd-client-ssl._tcp.example.com on {addr}: no such host")
        );
        let found = lookup_srv(&config, "etcd-client", "tcp", "example.com").unwrap();
        assert_eq!(found[0].target, "m1.example.com.");
        answering.join().unwrap();
    }
}
