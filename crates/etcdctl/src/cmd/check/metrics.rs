//! `process_resident_memory_bytes` from a member's `/metrics`, as
//! `check datascale` reads it (etcdctl's `endpointMemoryMetrics`): any
//! failure is printed on stdout and reads as 0.

use std::sync::Arc;

use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::global::ClientConfig;

const RESIDENT_MEMORY: &str = "process_resident_memory_bytes";

/// The resident memory of the member at `host` in bytes, or 0 after
/// printing why it could not be read.
pub async fn resident_memory_bytes(host: &str, config: &ClientConfig) -> f64 {
    let url = if host.starts_with("http://") || host.starts_with("https://") {
        format!("{host}/metrics")
    } else {
        format!("http://{host}/metrics")
    };
    let body = match get(&url, config).await {
        Ok(b) => b,
        Err(e) => {
            println!("fetch error: Get {}: {e}", gofmt::duration::quote(&url));
            return 0.0;
        }
    };
    let Some(value) = body.lines().find_map(|l| l.strip_prefix(RESIDENT_MEMORY)) else {
        println!("could not find: {RESIDENT_MEMORY}");
        return 0.0;
    };
    let value = value.trim();
    match value.parse::<f64>() {
        Ok(v) => v,
        Err(_) => {
            println!(
                "parse error: strconv.ParseFloat: parsing {}: invalid syntax",
                gofmt::duration::quote(value)
            );
            0.0
        }
    }
}

/// An HTTP/1.1 GET of `url`'s body (TLS for `https://`, with the client's
/// TLS settings).
async fn get(url: &str, config: &ClientConfig) -> Result<String, String> {
    let (https, rest) = match url.strip_prefix("https://") {
        Some(rest) => (true, rest),
        None => (false, url.strip_prefix("http://").unwrap_or(url)),
    };
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, "/"),
    };
    let tcp = TcpStream::connect(authority)
        .await
        .map_err(|e| format!("dial tcp {authority}: {e}"))?;
    if !https {
        return request(tcp, authority, path).await;
    }
    let settings = config.tls.clone().unwrap_or_default();
    let mut tls = crate::client::tls_config(&settings).map_err(|e| e.message)?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(settings.server_name.clone().unwrap_or(host.to_string()))
        .map_err(|e| e.to_string())?;
    let stream = TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    request(stream, authority, path).await
}

async fn request<S>(stream: S, authority: &str, path: &str) -> Result<String, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let conn = tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, authority)
        .body(String::new())
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    conn.abort();
    Ok(String::from_utf8_lossy(&body).into_owned())
}
