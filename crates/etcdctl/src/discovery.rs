//! DNS SRV discovery of client endpoints (`--discovery-srv`), as etcd's
//! `srv.GetClient` and etcdctl's `endpointsFromFlagValue` do it:
//!
//! - `_etcd-client-ssl._tcp.<domain>` gives `https://` endpoints and
//!   `_etcd-client._tcp.<domain>` `http://` ones (with a service name:
//!   `_etcd-client-ssl-<name>._tcp`, `_etcd-client-<name>._tcp`); the
//!   lookup fails only when both do;
//! - an endpoint is `<scheme>://<target>:<port>`, the target as DNS gives
//!   it (an absolute name, with its final dot);
//! - with `--insecure-discovery=false` the `http://` endpoints are dropped,
//!   each with a line on stderr (and the certificate is checked against the
//!   domain: see `GlobalArgs::client_config`).

use crate::dns::{self, Config};

/// The client URLs published for `domain`.
pub fn client_endpoints(
    domain: &str,
    service_name: &str,
    insecure: bool,
) -> Result<Vec<String>, String> {
    let endpoints = lookup(&Config::system(), domain, service_name)?;
    if insecure {
        return Ok(endpoints);
    }
    Ok(endpoints
        .into_iter()
        .filter(|ep| {
            let plain = ep.starts_with("http://");
            if plain {
                eprintln!(
                    "ignoring discovered insecure endpoint {}",
                    gofmt::duration::quote(ep)
                );
            }
            !plain
        })
        .collect())
}

/// etcd's `GetSRVService`: `etcd-client`, `-ssl` for https, `-<name>` last.
fn service(scheme: &str, service_name: &str) -> String {
    let mut service = "etcd-client".to_string();
    if scheme == "https" {
        service.push_str("-ssl");
    }
    if !service_name.is_empty() {
        service.push('-');
        service.push_str(service_name);
    }
    service
}

fn lookup(config: &Config, domain: &str, service_name: &str) -> Result<Vec<String>, String> {
    let mut endpoints = Vec::new();
    let mut errors = Vec::new();
    for scheme in ["https", "http"] {
        match dns::lookup_srv(config, &service(scheme, service_name), "tcp", domain) {
            Ok(srvs) => endpoints.extend(
                srvs.iter()
                    .map(|srv| format!("{scheme}://{}", join_host_port(&srv.target, srv.port))),
            ),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if let [https, http] = errors.as_slice() {
        return Err(format!("dns lookup errors: {https} and {http}"));
    }
    Ok(endpoints)
}

/// Go's `net.JoinHostPort`.
fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names() {
        assert_eq!(service("https", ""), "etcd-client-ssl");
        assert_eq!(service("http", ""), "etcd-client");
        assert_eq!(service("https", "prod"), "etcd-client-ssl-prod");
        assert_eq!(service("http", "prod"), "etcd-client-prod");
        assert_eq!(
            join_host_port("m1.example.com.", 2379),
            "m1.example.com.:2379"
        );
    }

    #[test]
    fn an_invalid_domain_fails_both_lookups_without_asking() {
        let config = Config::parse("nameserver 127.0.0.1\n");
        assert_eq!(
            lookup(&config, "bad domain", "").unwrap_err(),
            "dns lookup errors: lookup _etcd-client-ssl._tcp.bad domain: no such host \
             and lookup _etcd-client._tcp.bad domain: no such host"
        );
    }
}
