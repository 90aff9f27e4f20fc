//! Accepting client connections: gRPC (HTTP/2) and plain HTTP/1.1 share one
//! listener, as in etcd. Each connection is served by hyper's auto builder;
//! a semaphore bounds the number of connections; a malformed connection only
//! ends itself.

use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::limits;

/// The CommonName of the certificate a client presented on this connection.
#[derive(Debug, Clone)]
pub struct CertName(pub String);

/// How long a client may take to finish its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves one listener, with TLS when `tls` is given, allowing each HTTP/2
/// connection `max_streams` concurrent streams.
pub async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    router: axum::Router,
    max_streams: u32,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits::CLIENT_CONNECTIONS_MAX));
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = shutdown.changed() => return,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let conn_shutdown = shutdown.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => {
                    let service = TowerToHyperService::new(router);
                    serve_connection(stream, service, max_streams, conn_shutdown, peer).await
                }
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
                    match handshake {
                        Ok(Ok(tls_stream)) => {
                            // The client certificate's CommonName rides with
                            // each request of the connection (a user name for
                            // auth with --client-cert-auth).
                            let name = tls_stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|chain| chain.first())
                                .and_then(crate::config::tls::common_name);
                            let router = match name {
                                Some(name) => router.layer(axum::Extension(CertName(name))),
                                None => router,
                            };
                            let service = TowerToHyperService::new(router);
                            serve_connection(tls_stream, service, max_streams, conn_shutdown, peer)
                                .await
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(%peer, error = %e, "rejected a TLS handshake")
                        }
                        Err(_) => tracing::warn!(%peer, "a TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

async fn serve_connection<IO>(
    io: IO,
    service: TowerToHyperService<axum::Router>,
    max_streams: u32,
    mut shutdown: watch::Receiver<bool>,
    peer: std::net::SocketAddr,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http2().max_concurrent_streams(max_streams);
    // A client may shut down its write side and wait for the answer, as Go's
    // server (etcd) allows; hyper would otherwise drop the answer.
    builder.http1().half_close(true);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "client connection ended with an error");
            }
        }
        _ = shutdown.changed() => conn.as_mut().graceful_shutdown(),
    }
}
