//! What every client of an etcd member shares: `etcdctl`, the `benchmark`
//! tool and a member dialing its peers (leader forwarding, discovery,
//! hashes). Today that is TLS ([`tls`]): reading certificates, the trusted
//! roots, and the verifier for peers whose chain is not checked. Endpoint
//! failover and the auth token are to come here too (issue 14).

pub mod tls;
