//! Numbers as Docker's listings print them (its `go-units` package): "3 weeks ago",
//! "Up About a minute", "13.3kB". One formatter for every command, so `images`, `ps`,
//! `history` and `system df` say the same thing the same way.

/// A duration in seconds as Docker words it: "Less than a second", "About a minute",
/// "3 hours", "2 weeks" (go-units' `HumanDuration`).
pub fn duration(secs: i64) -> String {
    let secs = secs.max(0);
    let minutes = secs / 60;
    // Hours round to the nearest, as go-units does (`d.Hours() + 0.5`).
    let hours = (secs + 1800) / 3600;
    match secs {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        _ if minutes == 1 => "About a minute".into(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", secs / 3600 / 24 / 365),
    }
}

/// How long ago `then` (seconds since the epoch) was: "3 weeks ago".
pub fn ago(then: i64) -> String {
    format!("{} ago", duration(ferry_oci::time::now() - then))
}

/// A size in bytes with decimal units and `precision` significant digits, as Docker prints
/// sizes: `13.3kB`, `54.8MB`, `204MB` (go-units' `HumanSizeWithPrecision`; listings use 3,
/// `system df` uses 4).
pub fn size_with_precision(bytes: u64, precision: usize) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit < UNITS.len() - 1 {
        size /= 1000.0;
        unit += 1;
    }
    format!("{}{}", general(size, precision), UNITS[unit])
}

/// A size as `docker images`, `ps -s` and `history` print it.
pub fn size(bytes: u64) -> String {
    size_with_precision(bytes, 3)
}

/// Go's `%.*g`: `precision` significant digits, trailing zeros dropped, an exponent only
/// when the number needs more digits than that (`1e+03`).
fn general(x: f64, precision: usize) -> String {
    if x == 0.0 {
        return "0".into();
    }
    let precision = precision.max(1);
    // The exponent of the value once rounded to `precision` digits.
    let sci = format!("{:.*e}", precision - 1, x);
    let (mantissa, exp) = sci.split_once('e').expect("Rust writes an exponent");
    let exp: i32 = exp.parse().expect("a number");
    if exp < -4 || exp >= precision as i32 {
        let m = trim_zeros(mantissa);
        return format!("{m}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
    let decimals = (precision as i32 - 1 - exp).max(0) as usize;
    trim_zeros(&format!("{x:.decimals$}")).to_string()
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_docker_words() {
        let cases = [
            (0, "Less than a second"),
            (1, "1 second"),
            (59, "59 seconds"),
            (60, "About a minute"),
            (119, "About a minute"),
            (120, "2 minutes"),
            (3599, "59 minutes"),
            (3600, "About an hour"),
            (5399, "About an hour"),
            (5400, "2 hours"),
            (47 * 3600, "47 hours"),
            (48 * 3600, "2 days"),
            (13 * 86_400, "13 days"),
            (14 * 86_400, "2 weeks"),
            (59 * 86_400, "8 weeks"),
            (60 * 86_400, "2 months"),
            (729 * 86_400, "24 months"),
            (730 * 86_400, "2 years"),
        ];
        for (secs, words) in cases {
            assert_eq!(duration(secs), words, "{secs}s");
        }
    }

    #[test]
    fn sizes_as_docker_prints_them() {
        let cases = [
            (0, "0B"),
            (999, "999B"),
            (1000, "1kB"),
            (13_336, "13.3kB"),
            (1_240_000, "1.24MB"),
            (54_829_000, "54.8MB"),
            (204_000_000, "204MB"),
            (999_600, "1e+03kB"),
            (5_000_000_000, "5GB"),
        ];
        for (bytes, text) in cases {
            assert_eq!(size(bytes), text, "{bytes}");
        }
        assert_eq!(size_with_precision(1_234_567, 4), "1.235MB");
    }
}
