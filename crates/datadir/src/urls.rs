//! Peer and client URLs as etcd's flags take them (`--initial-cluster`,
//! `--listen-client-urls`, ...), parsed with etcd's error texts.

/// `name1=url1,name1=url2,name2=url3` → `[(name1, [url1, url2]), (name2, [url3])]`
/// (etcd's URLsMap); the error says what is wrong, naming no flag.
pub fn parse_urls_map(raw: &str) -> Result<Vec<(String, Vec<String>)>, String> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for part in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, url) = part
            .split_once('=')
            .ok_or_else(|| format!("\"{part}\" is not of the form name=url"))?;
        parse_url(url)?;
        match out.iter_mut().find(|(n, _)| n == name) {
            Some((_, urls)) => urls.push(url.to_string()),
            None => out.push((name.to_string(), vec![url.to_string()])),
        }
    }
    Ok(out)
}

/// A listen or advertise URL: scheme, host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

/// Parses `http://host:port` (also `https`, `unix`-less forms etcd accepts for TCP).
pub fn parse_url(s: &str) -> Result<Url, String> {
    let (scheme, rest) = s
        .split_once("://")
        .ok_or_else(|| format!("URL scheme must be http, https, unix, or unixs: {s}"))?;
    if !matches!(scheme, "http" | "https") {
        return Err(format!(
            "URL scheme must be http, https, unix, or unixs: {s}"
        ));
    }
    let hostport = rest.trim_end_matches('/');
    if hostport.contains('/') {
        return Err(format!("URL must not contain a path: {s}"));
    }
    let (host, port) = hostport
        .rsplit_once(':')
        .ok_or_else(|| format!("URL address does not have the form \"host:port\": {s}"))?;
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("URL address does not have the form \"host:port\": {s}"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Ok(Url {
        scheme: scheme.to_string(),
        host,
        port,
    })
}
