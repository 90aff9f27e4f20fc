//! Versions as etcd 3.6 reasons about them (its `etcdserver/version`
//! package): the cluster version, the downgrade job, and the decisions the
//! leader's version monitor takes. Pure functions, so every rule is
//! unit-tested without a cluster.
//!
//! ```text
//!            enable 3.5 (validated)                  every member runs 3.5
//!  cv 3.6 ───────────────────────▶ cv 3.6, job→3.5 ──▶ cv 3.5 ──────────────▶ job done
//!    ▲       (monitor lowers cv to the target)           │      (leader cancels it:
//!    │                                                   │       "the cluster has been
//!    └──────────── cancel: job off, monitor raises cv ◀──┘        downgraded")
//!                  back to the lowest member version
//! ```
//!
//! - The cluster version is kept as major.minor; on the wire and in logs it is
//!   `3.6.0` (go-semver's form of `{3, 6}`), in Downgrade answers `3.6`
//!   (etcd's `version.Cluster`).
//! - A downgrade may only target exactly one minor below the cluster version,
//!   and only one job runs at a time.
//! - Without a job the cluster version only rises (to the lowest member
//!   version); with one it is set to the target, as long as both the cluster
//!   version and the lowest member version are one minor above it.
//!
//! Left out: etcd's initial cluster version 3.0 while some member has not
//! reported its version (we wait until every member has published, so the
//! first cluster version is already the members' lowest). The storage
//! version follows the cluster version in `storage_version.rs`.

use std::fmt;

use api::EtcdError;

/// A version reduced to major.minor, the granularity of cluster versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MajorMinor {
    pub major: i64,
    pub minor: i64,
}

impl MajorMinor {
    /// The major.minor of a full version such as `3.6.2` or `3.5.0-rc.1`;
    /// None unless it parses as go-semver parses it.
    pub fn of(version: &str) -> Option<MajorMinor> {
        parse_semver(version).map(|(major, minor, _)| MajorMinor { major, minor })
    }

    /// The only version a cluster at `self` may be downgraded to
    /// (etcd's `AllowedDowngradeVersion`): one minor below.
    pub fn allowed_downgrade(self) -> MajorMinor {
        MajorMinor {
            major: self.major,
            minor: self.minor - 1,
        }
    }

    /// `3.6`: the form of etcd's `version.Cluster`, used in Downgrade answers.
    pub fn short(self) -> String {
        format!("{}.{}", self.major, self.minor)
    }
}

/// `3.6.0`: go-semver's string of a major.minor version.
impl fmt::Display for MajorMinor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.0", self.major, self.minor)
    }
}

/// Parses a version as go-semver's `NewVersion` does: build metadata after
/// the first `+`, then a pre-release after the first `-` (both made of
/// dot-separated `[0-9A-Za-z-]+` identifiers), and the rest exactly three
/// dot-separated base-10 integers that fit an i64. Returns (major, minor, patch).
pub fn parse_semver(version: &str) -> Option<(i64, i64, i64)> {
    let (rest, metadata) = version.split_once('+').unwrap_or((version, ""));
    let (core, pre_release) = rest.split_once('-').unwrap_or((rest, ""));
    let parts: Vec<&str> = core.splitn(3, '.').collect();
    if parts.len() != 3 || !valid_identifier(pre_release) || !valid_identifier(metadata) {
        return None;
    }
    let number = |s: &str| -> Option<i64> {
        // Go's strconv.ParseInt(s, 10, 64): an optional sign, then digits.
        let digits = s.strip_prefix('+').unwrap_or(s);
        let unsigned = digits.strip_prefix('-').unwrap_or(digits);
        if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse::<i64>().ok()
    };
    Some((number(parts[0])?, number(parts[1])?, number(parts[2])?))
}

/// go-semver's identifier rule for a pre-release or build metadata (empty is fine).
fn valid_identifier(id: &str) -> bool {
    id.is_empty()
        || id.split('.').all(|part| {
            !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// The target of a Downgrade request (etcd's `convertToClusterVersion`):
/// a full version, or major.minor alone; the patch level is dropped.
pub fn parse_downgrade_target(version: &str) -> Result<MajorMinor, EtcdError> {
    MajorMinor::of(version)
        .or_else(|| MajorMinor::of(&format!("{version}.0")))
        .ok_or(EtcdError::WrongDowngradeVersionFormat)
}

/// Whether a cluster at `from` may be downgraded to `to` (etcd's `isValidDowngrade`).
pub fn is_valid_downgrade(from: MajorMinor, to: MajorMinor) -> bool {
    to == from.allowed_downgrade()
}

/// Whether the cluster version may change from `from` to `to` (etcd's
/// `IsValidClusterVersionChange`): a one-minor downgrade, or any rise within
/// the same major version.
pub fn is_valid_cluster_version_change(from: MajorMinor, to: MajorMinor) -> bool {
    is_valid_downgrade(from, to) || (from.major == to.major && from < to)
}

/// The downgrade job of the cluster, part of the replicated cluster state
/// (etcd's `DowngradeInfo`). Cancelling clears the target.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DowngradeInfo {
    pub enabled: bool,
    /// As proposed: `3.5.0`; empty when no job runs.
    pub target_version: String,
}

impl DowngradeInfo {
    /// The target while a job runs (None without a job, or if the stored
    /// target does not parse, which no request of ours can produce).
    pub fn target(&self) -> Option<MajorMinor> {
        if !self.enabled {
            return None;
        }
        MajorMinor::of(&self.target_version)
    }
}

/// Why the monitor leaves the cluster version alone although a job runs
/// (etcd logs these as errors and retries at the next check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoDowngrade {
    /// The cluster version is not one minor above the target.
    FromClusterVersion {
        cluster: MajorMinor,
        target: MajorMinor,
    },
    /// The lowest member version is not one minor above the target.
    FromMinimalServerVersion {
        minimal: MajorMinor,
        target: MajorMinor,
    },
}

/// What the leader sets the cluster version to (etcd's
/// `decideClusterVersion`), given the current one, the lowest version the
/// members run (None while some member has not published one) and the
/// downgrade job. `Ok(None)`: leave it as it is.
pub fn decide_cluster_version(
    current: Option<MajorMinor>,
    lowest_member: Option<MajorMinor>,
    downgrade: &DowngradeInfo,
) -> Result<Option<MajorMinor>, NoDowngrade> {
    let Some(lowest) = lowest_member else {
        return Ok(None);
    };
    let Some(current) = current else {
        return Ok(Some(lowest));
    };
    if let Some(target) = downgrade.target() {
        if target == current {
            return Ok(None);
        }
        if !is_valid_downgrade(current, target) {
            return Err(NoDowngrade::FromClusterVersion {
                cluster: current,
                target,
            });
        }
        if !is_valid_downgrade(lowest, target) {
            return Err(NoDowngrade::FromMinimalServerVersion {
                minimal: lowest,
                target,
            });
        }
        return Ok(Some(target));
    }
    if current < lowest && is_valid_cluster_version_change(current, lowest) {
        return Ok(Some(lowest));
    }
    Ok(None)
}

/// Whether every member runs the downgrade target (major.minor), so the job
/// is finished (etcd's `versionsMatchTarget`). `versions` has one entry per
/// member: None for one that has not published a version it could parse.
pub fn downgrade_finished(versions: &[Option<MajorMinor>], target: MajorMinor) -> bool {
    versions.iter().all(|v| *v == Some(target))
}

/// The check a member makes of its own version against the cluster's (at
/// start, and whenever a cluster version is applied): a server older than
/// the cluster version must not serve it (etcd's `MustDetectDowngrade`),
/// unless a downgrade job targets exactly its version (the rule etcd 3.5
/// members apply while a cluster downgrades to them). Err: etcd's message.
pub fn check_server_version(
    server: MajorMinor,
    cluster: Option<MajorMinor>,
    downgrade: &DowngradeInfo,
) -> Result<(), &'static str> {
    match cluster {
        Some(cv) if server < cv && downgrade.target() != Some(server) => {
            Err("invalid downgrade; server version is lower than determined cluster version")
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mm(major: i64, minor: i64) -> MajorMinor {
        MajorMinor { major, minor }
    }

    fn job(target: &str) -> DowngradeInfo {
        DowngradeInfo {
            enabled: true,
            target_version: target.into(),
        }
    }

    #[test]
    fn semver_parses_as_go_semver() {
        let ok = [
            ("3.6.0", (3, 6, 0)),
            ("3.5.17", (3, 5, 17)),
            ("3.5.0-rc.1", (3, 5, 0)),
            ("3.5.0+build.7", (3, 5, 0)),
            ("3.5.0-alpha-1+meta", (3, 5, 0)),
            ("03.05.00", (3, 5, 0)),
            ("3.5.0-", (3, 5, 0)),
            ("3.5.0+", (3, 5, 0)),
        ];
        for (v, want) in ok {
            assert_eq!(parse_semver(v), Some(want), "{v}");
        }
        let bad = [
            "",
            "3",
            "3.5",
            "v3.5.0",
            "3.5.x",
            "3.5.0.1",
            "3..0",
            "3.5.0-rc..1",
            "3.5.0-rc_1",
            " 3.5.0",
            "3.5.0 ",
            "99999999999999999999.0.0",
        ];
        for v in bad {
            assert_eq!(parse_semver(v), None, "{v:?}");
        }
    }

    #[test]
    fn downgrade_targets_accept_major_minor_or_a_full_version() {
        assert_eq!(parse_downgrade_target("3.5"), Ok(mm(3, 5)));
        assert_eq!(parse_downgrade_target("3.5.0"), Ok(mm(3, 5)));
        assert_eq!(parse_downgrade_target("3.5.9"), Ok(mm(3, 5)));
        assert_eq!(parse_downgrade_target("3.5.1-rc.0"), Ok(mm(3, 5)));
        for v in ["", "3", "three.five", "3.5.0.0", "v3.5", "3.5-rc"] {
            assert_eq!(
                parse_downgrade_target(v),
                Err(EtcdError::WrongDowngradeVersionFormat),
                "{v:?}"
            );
        }
    }

    #[test]
    fn only_one_minor_below_is_a_valid_downgrade() {
        assert!(is_valid_downgrade(mm(3, 6), mm(3, 5)));
        assert!(!is_valid_downgrade(mm(3, 6), mm(3, 4)));
        assert!(!is_valid_downgrade(mm(3, 6), mm(3, 6)));
        assert!(!is_valid_downgrade(mm(3, 6), mm(3, 7)));
        assert!(!is_valid_downgrade(mm(3, 6), mm(2, 5)));
        assert!(is_valid_cluster_version_change(mm(3, 5), mm(3, 6)));
        assert!(is_valid_cluster_version_change(mm(3, 4), mm(3, 6)));
        assert!(is_valid_cluster_version_change(mm(3, 6), mm(3, 5)));
        assert!(!is_valid_cluster_version_change(mm(3, 6), mm(3, 4)));
        assert!(!is_valid_cluster_version_change(mm(3, 6), mm(4, 0)));
        assert_eq!(mm(3, 6).to_string(), "3.6.0");
        assert_eq!(mm(3, 6).short(), "3.6");
    }

    #[test]
    fn the_monitor_sets_raises_lowers_and_refuses() {
        let none = DowngradeInfo::default();
        // First decision: the lowest member version.
        assert_eq!(
            decide_cluster_version(None, Some(mm(3, 6)), &none),
            Ok(Some(mm(3, 6)))
        );
        // Not every member has published: wait.
        assert_eq!(decide_cluster_version(None, None, &none), Ok(None));
        assert_eq!(
            decide_cluster_version(Some(mm(3, 6)), None, &job("3.5.0")),
            Ok(None)
        );
        // Without a job: only up.
        assert_eq!(
            decide_cluster_version(Some(mm(3, 5)), Some(mm(3, 6)), &none),
            Ok(Some(mm(3, 6)))
        );
        assert_eq!(
            decide_cluster_version(Some(mm(3, 6)), Some(mm(3, 5)), &none),
            Ok(None)
        );
        assert_eq!(
            decide_cluster_version(Some(mm(3, 6)), Some(mm(3, 6)), &none),
            Ok(None)
        );
        // A job lowers it to the target while every member still runs 3.6…
        assert_eq!(
            decide_cluster_version(Some(mm(3, 6)), Some(mm(3, 6)), &job("3.5.0")),
            Ok(Some(mm(3, 5)))
        );
        // …and keeps it there, whatever the members run.
        assert_eq!(
            decide_cluster_version(Some(mm(3, 5)), Some(mm(3, 5)), &job("3.5.0")),
            Ok(None)
        );
        assert_eq!(
            decide_cluster_version(Some(mm(3, 5)), Some(mm(3, 6)), &job("3.5.0")),
            Ok(None)
        );
        // A job the versions do not allow changes nothing.
        assert_eq!(
            decide_cluster_version(Some(mm(3, 6)), Some(mm(3, 6)), &job("3.4.0")),
            Err(NoDowngrade::FromClusterVersion {
                cluster: mm(3, 6),
                target: mm(3, 4)
            })
        );
        assert_eq!(
            decide_cluster_version(Some(mm(3, 6)), Some(mm(3, 7)), &job("3.5.0")),
            Err(NoDowngrade::FromMinimalServerVersion {
                minimal: mm(3, 7),
                target: mm(3, 5)
            })
        );
        // After a cancel, back up to the members' version.
        let cancelled = DowngradeInfo::default();
        assert_eq!(
            decide_cluster_version(Some(mm(3, 5)), Some(mm(3, 6)), &cancelled),
            Ok(Some(mm(3, 6)))
        );
        // A disabled job's leftover target is ignored.
        let disabled = DowngradeInfo {
            enabled: false,
            target_version: "3.5.0".into(),
        };
        assert_eq!(disabled.target(), None);
    }

    #[test]
    fn a_job_is_finished_when_every_member_runs_the_target() {
        let target = mm(3, 5);
        assert!(downgrade_finished(
            &[Some(mm(3, 5)), Some(mm(3, 5))],
            target
        ));
        assert!(!downgrade_finished(
            &[Some(mm(3, 5)), Some(mm(3, 6))],
            target
        ));
        assert!(!downgrade_finished(&[Some(mm(3, 5)), None], target));
    }

    #[test]
    fn an_older_server_is_refused_unless_the_job_targets_it() {
        let none = DowngradeInfo::default();
        let refused =
            Err("invalid downgrade; server version is lower than determined cluster version");
        assert_eq!(check_server_version(mm(3, 6), None, &none), Ok(()));
        assert_eq!(
            check_server_version(mm(3, 6), Some(mm(3, 6)), &none),
            Ok(())
        );
        assert_eq!(
            check_server_version(mm(3, 6), Some(mm(3, 5)), &none),
            Ok(())
        );
        assert_eq!(
            check_server_version(mm(3, 5), Some(mm(3, 6)), &none),
            refused
        );
        assert_eq!(
            check_server_version(mm(3, 5), Some(mm(3, 6)), &job("3.5.0")),
            Ok(())
        );
        assert_eq!(
            check_server_version(mm(3, 4), Some(mm(3, 6)), &job("3.5.0")),
            refused
        );
        assert_eq!(
            check_server_version(mm(3, 6), Some(mm(3, 7)), &none),
            refused
        );
    }
}
