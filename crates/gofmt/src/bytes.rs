//! go-humanize's `Bytes`: SI units (powers of 1000), one decimal below 10.
//! etcdctl prints database sizes this way (`endpoint status`, `snapshot status`).

const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];

/// `humanize.Bytes(n)`: `"9 B"`, `"1.2 kB"`, `"20 kB"`, `"2.1 GB"`.
pub fn humanize(n: u64) -> String {
    if n < 10 {
        return format!("{n} B");
    }
    let exp = ((n as f64).ln() / 1000f64.ln()).floor() as usize;
    let exp = exp.min(UNITS.len() - 1);
    let scaled = n as f64 / 1000f64.powi(exp as i32);
    let val = (scaled * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 {
        format!("{val:.1} {}", UNITS[exp])
    } else {
        format!("{val:.0} {}", UNITS[exp])
    }
}

#[cfg(test)]
mod tests {
    use super::humanize;

    #[test]
    fn matches_go_humanize() {
        assert_eq!(humanize(0), "0 B");
        assert_eq!(humanize(9), "9 B");
        assert_eq!(humanize(10), "10 B");
        assert_eq!(humanize(999), "999 B");
        assert_eq!(humanize(1000), "1.0 kB");
        assert_eq!(humanize(1234), "1.2 kB");
        assert_eq!(humanize(1500), "1.5 kB");
        assert_eq!(humanize(20480), "20 kB");
        assert_eq!(humanize(20512), "20 kB");
        assert_eq!(humanize(20600), "21 kB");
        assert_eq!(humanize(1 << 20), "1.0 MB");
        assert_eq!(humanize(25 * 1024 * 1024), "26 MB");
        assert_eq!(humanize(2 * 1024 * 1024 * 1024), "2.1 GB");
    }
}
