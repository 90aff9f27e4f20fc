//! Go's text formats, as etcd and etcdctl read and print them.
//!
//! etcd is written in Go, and its operators and scripts see Go's formatting:
//! durations (`1m30s`), `%q`-quoted strings and humanized byte sizes. The
//! server, `etcdctl` and `etcdutl` share these so that every binary prints
//! them alike.
//!
//! - [`duration`]: `time.ParseDuration` and `Duration.String`.
//! - [`quote`]: `strconv.Quote` (`%q`).
//! - [`bytes`]: go-humanize's `Bytes` (`20 kB`).

pub mod bytes;
pub mod duration;
pub mod quote;
pub mod zap;
