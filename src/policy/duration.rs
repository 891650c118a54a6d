//! Durations as people write them: plain seconds (`0.5`) or a number with a unit (`500ms`,
//! `2s`, `1m`, `1h`), bounded so that every accepted value can be added to an `Instant`.

use std::fmt;
use std::time::Duration;

/// The longest duration any setting accepts: 365 days. Far beyond any sensible retry delay or
/// deadline, and small enough that `Instant::now() + d` (and tokio's timer wheel, which caps
/// deadlines at about two years) can never overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// The units accepted after a number, with their length in seconds. Microseconds are left out on
/// purpose: tokio's timers resolve milliseconds, so `us` would promise what no sleep keeps.
const UNITS: [(&str, f64); 4] = [("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)];

/// How a duration is written, for the "expected …" part of a message.
pub(crate) const DURATION_SYNTAX: &str =
    "seconds (0.5) or a number with a unit (500ms, 2s, 1m, 1h), up to 1 year (31536000 s)";

/// Why a text or number is not an acceptable duration.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum DurationProblem {
    /// Not a number, or an unknown unit.
    NotADuration,
    /// NaN or infinite.
    NotFinite,
    /// A number of seconds below 0 or above [`MAX_DURATION`].
    OutOfRange(f64),
}

/// Parses `0.5`, `500ms`, `2 s`, `1m`, `1h` (surrounding whitespace allowed).
pub(crate) fn parse_duration(text: &str) -> Result<Duration, DurationProblem> {
    let text = text.trim();
    let (number, scale) = UNITS
        .iter()
        .find_map(|(unit, scale)| {
            let number = text.strip_suffix(unit)?;
            // "5m" must not be read as "5" + "m" of "ms": only a digit, '.' or space may
            // precede the unit.
            number
                .ends_with(|c: char| c.is_ascii_digit() || c == '.' || c == ' ')
                .then_some((number.trim_end(), *scale))
        })
        .unwrap_or((text, 1.0));
    let value = parse_number(number).ok_or(DurationProblem::NotADuration)?;
    seconds(value * scale)
}

/// A number of seconds as a duration, if it is finite and within `0..=MAX_DURATION`.
pub(crate) fn seconds(secs: f64) -> Result<Duration, DurationProblem> {
    if !secs.is_finite() {
        return Err(DurationProblem::NotFinite);
    }
    if !(0.0..=MAX_DURATION.as_secs_f64()).contains(&secs) {
        return Err(DurationProblem::OutOfRange(secs));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A decimal number as Rust parses it, minus the spellings of NaN and infinity (`nan`, `inf`),
/// which are never meant as a setting and which `f64::from_str` accepts.
pub(crate) fn parse_number(text: &str) -> Option<f64> {
    let text = text.trim();
    let plain = text
        .trim_start_matches(['+', '-'])
        .starts_with(|c: char| c.is_ascii_digit() || c == '.');
    plain.then(|| text.parse::<f64>().ok()).flatten()
}

/// A number for a message: `0.5`, `30`, `1e20` (no endless digits for huge or tiny values).
pub(crate) struct Number(pub(crate) f64);

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let magnitude = self.0.abs();
        if magnitude != 0.0 && !(1e-4..1e15).contains(&magnitude) {
            write!(f, "{:e}", self.0)
        } else {
            write!(f, "{}", self.0)
        }
    }
}

/// A duration for a message: `250 ms`, `2 s`, `1.5 s`.
pub(crate) struct Shown(pub(crate) Duration);

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs_f64();
        if self.0 < Duration::from_secs(1) && !self.0.is_zero() {
            write!(f, "{} ms", Number(secs * 1000.0))
        } else {
            write!(f, "{} s", Number(secs))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_seconds_and_units_are_read() {
        let cases = [
            ("0.5", 500),
            ("2", 2000),
            ("500ms", 500),
            ("500 ms", 500),
            ("2s", 2000),
            ("1.5s", 1500),
            ("1m", 60_000),
            ("1h", 3_600_000),
            (" 3 ", 3000),
            ("0", 0),
            ("1e3ms", 1000),
            (".25s", 250),
        ];
        for (text, millis) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(millis)),
                "{text}"
            );
        }
    }

    #[test]
    fn anything_else_is_refused_with_the_reason() {
        for text in [
            "",
            "soon",
            "5 minutes",
            "1us",
            "2d",
            "ms",
            "s",
            "1sm",
            "0x10",
            "--1",
        ] {
            assert_eq!(
                parse_duration(text),
                Err(DurationProblem::NotADuration),
                "{text}"
            );
        }
        for text in ["nan", "NaN", "inf", "-inf", "infinity"] {
            assert_eq!(
                parse_duration(text),
                Err(DurationProblem::NotADuration),
                "{text}"
            );
        }
        assert_eq!(parse_duration("1e400"), Err(DurationProblem::NotFinite));
        assert_eq!(
            parse_duration("1e20"),
            Err(DurationProblem::OutOfRange(1e20))
        );
        assert_eq!(parse_duration("-1"), Err(DurationProblem::OutOfRange(-1.0)));
        assert_eq!(
            parse_duration("8761h"),
            Err(DurationProblem::OutOfRange(8761.0 * 3600.0))
        );
        assert_eq!(parse_duration("8760h"), Ok(MAX_DURATION));
    }

    #[test]
    fn numbers_and_durations_print_briefly() {
        assert_eq!(Number(1e20).to_string(), "1e20");
        assert_eq!(Number(0.5).to_string(), "0.5");
        assert_eq!(Number(-1.0).to_string(), "-1");
        assert_eq!(Shown(Duration::from_millis(250)).to_string(), "250 ms");
        assert_eq!(Shown(Duration::from_secs(2)).to_string(), "2 s");
        assert_eq!(Shown(Duration::ZERO).to_string(), "0 s");
        assert_eq!(Shown(MAX_DURATION).to_string(), "31536000 s");
    }
}
