//! `--auto-compaction-mode` and `--auto-compaction-retention`, read as etcd
//! reads them. The compactor (`duties::compactor`) runs what this describes.

use std::time::Duration;

use gofmt::duration as go_duration;

pub const MODE_PERIODIC: &str = "periodic";
pub const MODE_REVISION: &str = "revision";

/// Periodic mode samples this many times per compaction interval.
pub const RETRY_DIVISOR: u32 = 10;
const HOUR_NANOS: i64 = 3_600_000_000_000;

/// What auto compaction keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retention {
    /// History younger than this window.
    Periodic(Duration),
    /// The last this many revisions (etcd allows any int64 here).
    Revision(i64),
}

/// Reads `--auto-compaction-retention` for `mode` as etcd does; None when it
/// is zero (auto compaction off). Errors are etcd's.
///
/// A non-negative integer is a revision count (revision mode) or hours
/// (periodic); anything else is a Go duration ("30m", "1h30m"), which in
/// revision mode counts nanoseconds as revisions, as in etcd. An empty mode
/// (possible with `--auto-compaction-mode=`) turns an integer retention off
/// and refuses a duration, as etcd does.
pub fn parse_retention(mode: &str, retention: &str) -> Result<Option<Retention>, String> {
    let retention = if retention.is_empty() { "0" } else { retention };
    let nanos_or_count = match retention.parse::<i64>() {
        Ok(n) if n >= 0 => match mode {
            MODE_REVISION => return Ok(Some(Retention::Revision(n)).filter(|_| n != 0)),
            MODE_PERIODIC => n.checked_mul(HOUR_NANOS).ok_or_else(|| {
                format!("error parsing CompactionRetention: {retention} hours is too long")
            })?,
            _ => 0,
        },
        _ => go_duration::parse(retention)
            .map_err(|e| format!("error parsing CompactionRetention: {e}"))?,
    };
    if nanos_or_count == 0 {
        return Ok(None);
    }
    match mode {
        MODE_REVISION => Ok(Some(Retention::Revision(nanos_or_count))),
        MODE_PERIODIC if nanos_or_count < 0 => Err(format!(
            "error parsing CompactionRetention: a negative periodic retention ({retention}) is not supported"
        )),
        MODE_PERIODIC if nanos_or_count < i64::from(RETRY_DIVISOR) => Err(format!(
            "error parsing CompactionRetention: a periodic retention under 10ns ({retention}) is not supported"
        )),
        MODE_PERIODIC => Ok(Some(Retention::Periodic(Duration::from_nanos(
            nanos_or_count.unsigned_abs(),
        )))),
        other => Err(format!("unsupported compaction mode {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);
    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn retention_is_read_as_etcd_reads_it() {
        let p = |s: &str| parse_retention(MODE_PERIODIC, s);
        let r = |s: &str| parse_retention(MODE_REVISION, s);
        let periodic = |d: Duration| Ok(Some(Retention::Periodic(d)));
        assert_eq!(p("0"), Ok(None));
        assert_eq!(p(""), Ok(None));
        assert_eq!(p("0s"), Ok(None));
        assert_eq!(p("24"), periodic(24 * HOUR));
        assert_eq!(p("+1"), periodic(HOUR));
        assert_eq!(p("24h"), periodic(24 * HOUR));
        assert_eq!(p("30m"), periodic(30 * MINUTE));
        assert_eq!(p("1h30m"), periodic(90 * MINUTE));
        assert_eq!(p("2.5s"), periodic(Duration::from_millis(2500)));
        assert_eq!(r("0"), Ok(None));
        assert_eq!(r("1000"), Ok(Some(Retention::Revision(1000))));
        // A duration in revision mode counts its nanoseconds, as in etcd.
        assert_eq!(r("1ms"), Ok(Some(Retention::Revision(1_000_000))));
        assert_eq!(parse_retention("", "24"), Ok(None));
        assert_eq!(
            parse_retention("", "1h"),
            Err("unsupported compaction mode ".to_string())
        );
        let errors: &[(&str, &str)] = &[
            (
                "abc",
                r#"error parsing CompactionRetention: time: invalid duration "abc""#,
            ),
            (
                "1.5",
                r#"error parsing CompactionRetention: time: missing unit in duration "1.5""#,
            ),
            (
                "-5",
                r#"error parsing CompactionRetention: time: missing unit in duration "-5""#,
            ),
            (
                "5x",
                r#"error parsing CompactionRetention: time: unknown unit "x" in duration "5x""#,
            ),
            (
                " 5",
                r#"error parsing CompactionRetention: time: invalid duration " 5""#,
            ),
        ];
        for (text, want) in errors {
            assert_eq!(p(text), Err(want.to_string()), "periodic {text}");
            assert_eq!(r(text), Err(want.to_string()), "revision {text}");
        }
        assert!(p("-5m").unwrap_err().contains("negative"));
        assert!(p("5ns").unwrap_err().contains("under 10ns"));
        assert!(p("9999999999999").unwrap_err().contains("too long"));
    }
}
