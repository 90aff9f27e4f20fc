//! Go's `time.Duration` text forms, as etcd reads and prints them.
//!
//! - [`parse`] follows `time.ParseDuration`: an optional sign, then one or
//!   more decimal numbers each with a unit (`ns`, `us`, `µs`, `μs`, `ms`, `s`,
//!   `m`, `h`), or `0` alone; its errors are Go's, word for word
//!   (`time: invalid duration "abc"`, `time: missing unit in duration "1.5"`,
//!   `time: unknown unit "x" in duration "5x"`), because etcd passes them on
//!   to the operator.
//! - [`format()`] follows `Duration.String`: `0s`, `500ms`, `1.5s`, `1m30s`,
//!   `24h0m0s`; etcd logs durations this way.
//!
//! Durations are signed nanoseconds in an `i64`, as in Go.

use std::time::Duration;

const NANOSECOND: u64 = 1;
const MICROSECOND: u64 = 1_000 * NANOSECOND;
const MILLISECOND: u64 = 1_000 * MICROSECOND;
const SECOND: u64 = 1_000 * MILLISECOND;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;
/// Go's bound while accumulating: 1<<63 (the magnitude of the most negative duration).
const LIMIT: u64 = 1 << 63;

/// Parses like Go's `time.ParseDuration`; the value in nanoseconds.
pub fn parse(orig: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration {}", quote(orig));
    let mut s = orig.as_bytes();
    let mut negative = false;
    if let Some(&c) = s.first() {
        if c == b'-' || c == b'+' {
            negative = c == b'-';
            s = &s[1..];
        }
    }
    if s == b"0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        if !(s[0] == b'.' || s[0].is_ascii_digit()) {
            return Err(invalid());
        }
        // The integer part.
        let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
        let mut value: u64 = 0;
        for &d in &s[..digits] {
            if value > LIMIT / 10 {
                return Err(invalid());
            }
            value = value * 10 + u64::from(d - b'0');
            if value > LIMIT {
                return Err(invalid());
            }
        }
        let has_integer = digits > 0;
        s = &s[digits..];
        // The fraction: digits past what a u64 holds are read and dropped, as in Go.
        let mut fraction: u64 = 0;
        let mut scale: f64 = 1.0;
        let mut has_fraction = false;
        if s.first() == Some(&b'.') {
            s = &s[1..];
            let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
            let mut overflow = false;
            for &d in &s[..digits] {
                if overflow {
                    continue;
                }
                if fraction > (u64::MAX >> 1) / 10 {
                    overflow = true;
                    continue;
                }
                let next = fraction * 10 + u64::from(d - b'0');
                if next >= LIMIT {
                    overflow = true;
                    continue;
                }
                fraction = next;
                scale *= 10.0;
            }
            has_fraction = digits > 0;
            s = &s[digits..];
        }
        if !has_integer && !has_fraction {
            return Err(invalid());
        }
        // The unit: everything up to the next number.
        let unit_len = s
            .iter()
            .take_while(|&&c| !(c == b'.' || c.is_ascii_digit()))
            .count();
        if unit_len == 0 {
            return Err(format!("time: missing unit in duration {}", quote(orig)));
        }
        let unit_text = &s[..unit_len];
        s = &s[unit_len..];
        let unit = match unit_text {
            b"ns" => NANOSECOND,
            b"us" => MICROSECOND,
            // U+00B5 (micro sign) and U+03BC (Greek small letter mu).
            b"\xc2\xb5s" | b"\xce\xbcs" => MICROSECOND,
            b"ms" => MILLISECOND,
            b"s" => SECOND,
            b"m" => MINUTE,
            b"h" => HOUR,
            _ => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    quote(&String::from_utf8_lossy(unit_text)),
                    quote(orig)
                ))
            }
        };
        if value > LIMIT / unit {
            return Err(invalid());
        }
        value *= unit;
        if fraction > 0 {
            // Go computes the fraction in float64 too (exact to the nanosecond for hours).
            value += (fraction as f64 * (unit as f64 / scale)) as u64;
            if value > LIMIT {
                return Err(invalid());
            }
        }
        total += value;
        if total > LIMIT {
            return Err(invalid());
        }
    }
    if negative {
        // total ≤ 2^63 here, so the negation fits.
        return Ok((total as i128).wrapping_neg() as i64);
    }
    i64::try_from(total).map_err(|_| invalid())
}

/// Formats like Go's `Duration.String` (`0s`, `1.5µs`, `500ms`, `1m30s`, `24h0m0s`).
pub fn format(d: Duration) -> String {
    let n = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    if n == 0 {
        return "0s".to_string();
    }
    if n < SECOND {
        return if n < MICROSECOND {
            format!("{n}ns")
        } else if n < MILLISECOND {
            format!("{}µs", decimal(n, 3))
        } else {
            format!("{}ms", decimal(n, 6))
        };
    }
    let seconds = n / SECOND;
    let fraction = decimal(n % SECOND, 9);
    let with_seconds = |s: u64| {
        // decimal() of the sub-second part starts with "0" or "0.xxx".
        format!("{s}{}s", fraction.trim_start_matches('0'))
    };
    if seconds < 60 {
        return with_seconds(seconds);
    }
    let minutes = seconds / 60;
    if minutes < 60 {
        return format!("{minutes}m{}", with_seconds(seconds % 60));
    }
    format!(
        "{}h{}m{}",
        minutes / 60,
        minutes % 60,
        with_seconds(seconds % 60)
    )
}

/// `v / 10^precision` as a decimal without trailing zeros ("1.5", "12", "0.25").
fn decimal(v: u64, precision: u32) -> String {
    let scale = 10u64.pow(precision);
    let (int, frac) = (v / scale, v % scale);
    if frac == 0 {
        return int.to_string();
    }
    let digits = format!("{frac:0width$}", width = precision as usize);
    format!("{int}.{}", digits.trim_end_matches('0'))
}

/// Go's `time.quote`: double quotes, `"` and `\` escaped, bytes outside
/// printable ASCII as `\xNN`.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for &b in s.as_bytes() {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(b as char);
            }
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_go() {
        let ok: &[(&str, i64)] = &[
            ("0", 0),
            ("+0", 0),
            ("-0", 0),
            ("5s", 5_000_000_000),
            ("1h30m", 5_400_000_000_000),
            ("1.5s", 1_500_000_000),
            (".5s", 500_000_000),
            ("5.s", 5_000_000_000),
            ("-5m", -300_000_000_000),
            ("+2h", 7_200_000_000_000),
            ("100ns", 100),
            ("3us", 3_000),
            ("3µs", 3_000),
            ("3μs", 3_000),
            ("1h1m1s1ms1us1ns", 3_661_001_001_001),
            ("0.000000001s", 1),
            ("2562047h47m16.854775807s", i64::MAX),
            ("-2562047h47m16.854775808s", i64::MIN),
        ];
        for (text, nanos) in ok {
            assert_eq!(parse(text), Ok(*nanos), "{text}");
        }
        let err: &[(&str, &str)] = &[
            ("", r#"time: invalid duration """#),
            ("abc", r#"time: invalid duration "abc""#),
            ("-", r#"time: invalid duration "-""#),
            (".s", r#"time: invalid duration ".s""#),
            ("5", r#"time: missing unit in duration "5""#),
            ("1.5", r#"time: missing unit in duration "1.5""#),
            ("-5", r#"time: missing unit in duration "-5""#),
            ("5x", r#"time: unknown unit "x" in duration "5x""#),
            ("5s3", r#"time: missing unit in duration "5s3""#),
            ("1 h", r#"time: unknown unit " h" in duration "1 h""#),
            (
                "9223372036854775808ns",
                r#"time: invalid duration "9223372036854775808ns""#,
            ),
            ("3000000h", r#"time: invalid duration "3000000h""#),
            ("\"5s", r#"time: invalid duration "\"5s""#),
            (
                "5é",
                r#"time: unknown unit "\xc3\xa9" in duration "5\xc3\xa9""#,
            ),
        ];
        for (text, message) in err {
            assert_eq!(parse(text), Err(message.to_string()), "{text}");
        }
    }

    #[test]
    fn formats_like_go() {
        let cases: &[(u64, &str)] = &[
            (0, "0s"),
            (1, "1ns"),
            (1_500, "1.5µs"),
            (500_000_000, "500ms"),
            (1_500_000_000, "1.5s"),
            (2_000_000_000, "2s"),
            (60_000_000_000, "1m0s"),
            (90_000_000_000, "1m30s"),
            (300_000_000_000, "5m0s"),
            (360_000_000_000, "6m0s"),
            (3_600_000_000_000, "1h0m0s"),
            (86_400_000_000_000, "24h0m0s"),
            (5_400_500_000_000, "1h30m0.5s"),
        ];
        for (nanos, text) in cases {
            assert_eq!(format(Duration::from_nanos(*nanos)), *text, "{nanos}");
            assert_eq!(parse(text), Ok(*nanos as i64), "{text} reads back");
        }
    }
}
