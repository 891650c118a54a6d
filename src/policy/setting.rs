//! The retry settings one by one: their names, what each accepts, and how a raw value (text from
//! a variable, a number from a file) becomes a checked one. Every input path goes through here.

use std::fmt;
use std::time::Duration;

use super::duration::{self, DURATION_SYNTAX, DurationProblem, MAX_DURATION, Number, Shown};
use super::jitter::JitterStrategy;
use super::origin::Origin;
use crate::ConfigError;

/// A setting's value as read, before it is checked: text (an environment variable, a string in a
/// file) or a typed value from a configuration format.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum RawValue<'a> {
    /// Text, parsed by the setting's rules (`"500ms"`, `"7"`, `"yes"`).
    Text(&'a str),
    /// An integer.
    Integer(i128),
    /// A floating-point number.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// Something no setting takes (a list, a table), named for the message: `"a list"`.
    Other(&'static str),
}

/// The settings, in the order of the documentation table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Field {
    MaxAttempts,
    InitialDelay,
    MaxDelay,
    ExponentialBase,
    Jitter,
    JitterFactor,
    JitterStrategy,
    MaxElapsed,
    AttemptTimeout,
    Seed,
}

/// A checked value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Value {
    Count(u32),
    Duration(Duration),
    Number(f64),
    Bool(bool),
    Strategy(JitterStrategy),
    Seed(u64),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Count(n) => write!(f, "{n}"),
            Self::Duration(d) => write!(f, "{}", Shown(*d)),
            Self::Number(x) => write!(f, "{}", Number(*x)),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Strategy(s) => write!(f, "{}", s.name()),
            Self::Seed(s) => write!(f, "{s}"),
        }
    }
}

/// Why a raw value was refused, before the setting's name and origin are known.
enum Refusal {
    /// Parsed, out of range: the value is shown.
    Range(String),
    /// Did not parse: what it is instead; raw text is never shown.
    Unparsed(String),
}

impl Field {
    pub(crate) const ALL: [Self; 10] = [
        Self::MaxAttempts,
        Self::InitialDelay,
        Self::MaxDelay,
        Self::ExponentialBase,
        Self::Jitter,
        Self::JitterFactor,
        Self::JitterStrategy,
        Self::MaxElapsed,
        Self::AttemptTimeout,
        Self::Seed,
    ];

    /// The builder method, config key and (upper-cased) variable suffix.
    pub(crate) fn key(self) -> &'static str {
        match self {
            Self::MaxAttempts => "max_attempts",
            Self::InitialDelay => "initial_delay",
            Self::MaxDelay => "max_delay",
            Self::ExponentialBase => "exponential_base",
            Self::Jitter => "jitter",
            Self::JitterFactor => "jitter_factor",
            Self::JitterStrategy => "jitter_strategy",
            Self::MaxElapsed => "max_elapsed",
            Self::AttemptTimeout => "attempt_timeout",
            Self::Seed => "seed",
        }
    }

    pub(crate) fn from_key(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|field| field.key() == key)
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// What the setting accepts, as the message says it.
    pub(crate) fn expected(self) -> String {
        match self {
            Self::MaxAttempts => format!("an integer from 1 to {}", u32::MAX),
            Self::InitialDelay | Self::MaxDelay => format!("a duration ≥ 0: {DURATION_SYNTAX}"),
            Self::MaxElapsed | Self::AttemptTimeout => {
                format!("a duration > 0: {DURATION_SYNTAX}")
            }
            Self::ExponentialBase => "a finite number ≥ 1".to_owned(),
            Self::Jitter => "true or false (also 1/0, yes/no, on/off)".to_owned(),
            Self::JitterFactor => "a number in [0, 1]".to_owned(),
            Self::JitterStrategy => JitterStrategy::ACCEPTED.to_owned(),
            Self::Seed => format!("an integer from 0 to {}", u64::MAX),
        }
    }

    /// Reads and checks `raw` for this setting.
    pub(crate) fn parse(self, raw: RawValue<'_>, origin: &Origin) -> Result<Value, ConfigError> {
        let value = self
            .read(raw)
            .map_err(|refusal| self.refused(refusal, origin))?;
        self.check(value, origin)?;
        Ok(value)
    }

    /// Checks a value's range (builder values arrive here unchecked).
    pub(crate) fn check(self, value: Value, origin: &Origin) -> Result<(), ConfigError> {
        let in_range = match value {
            Value::Count(n) => n >= 1,
            Value::Duration(d) => match self {
                Self::MaxElapsed | Self::AttemptTimeout => !d.is_zero() && d <= MAX_DURATION,
                _ => d <= MAX_DURATION,
            },
            Value::Number(x) => match self {
                Self::ExponentialBase => x.is_finite() && x >= 1.0,
                _ => (0.0..=1.0).contains(&x),
            },
            Value::Bool(_) | Value::Strategy(_) | Value::Seed(_) => true,
        };
        if in_range {
            Ok(())
        } else {
            Err(self.refused(Refusal::Range(value.to_string()), origin))
        }
    }

    fn refused(self, refusal: Refusal, origin: &Origin) -> ConfigError {
        let name = origin.name(self.key());
        let error = match refusal {
            Refusal::Range(shown) => ConfigError::new(name, shown, self.expected()),
            Refusal::Unparsed(what) => ConfigError::unshown(name, what, self.expected()),
        };
        match origin.place(self.key()) {
            Some(place) => error.at(place),
            None => error,
        }
    }

    fn read(self, raw: RawValue<'_>) -> Result<Value, Refusal> {
        match self {
            Self::MaxAttempts => {
                let n = integer(raw, "an integer")?;
                u32::try_from(n)
                    .map(Value::Count)
                    .map_err(|_| Refusal::Range(n.to_string()))
            }
            Self::Seed => {
                let n = integer(raw, "an integer")?;
                u64::try_from(n)
                    .map(Value::Seed)
                    .map_err(|_| Refusal::Range(n.to_string()))
            }
            Self::InitialDelay | Self::MaxDelay | Self::MaxElapsed | Self::AttemptTimeout => {
                duration(raw).map(Value::Duration)
            }
            Self::ExponentialBase | Self::JitterFactor => number(raw).map(Value::Number),
            Self::Jitter => boolean(raw).map(Value::Bool),
            Self::JitterStrategy => match raw {
                RawValue::Text(text) => JitterStrategy::parse(text)
                    .map(Value::Strategy)
                    .ok_or_else(|| Refusal::Unparsed("not a strategy name".to_owned())),
                other => Err(wrong_type(other)),
            },
        }
    }
}

fn wrong_type(raw: RawValue<'_>) -> Refusal {
    let what = match raw {
        RawValue::Text(_) => "text",
        RawValue::Integer(_) => "an integer",
        RawValue::Float(_) => "a fractional number",
        RawValue::Bool(_) => "a boolean",
        RawValue::Other(what) => what,
    };
    Refusal::Unparsed(format!("found {what}"))
}

fn integer(raw: RawValue<'_>, what: &str) -> Result<i128, Refusal> {
    match raw {
        RawValue::Integer(n) => Ok(n),
        RawValue::Text(text) => text
            .trim()
            .parse::<i128>()
            .map_err(|_| Refusal::Unparsed(format!("not {what}"))),
        other => Err(wrong_type(other)),
    }
}

fn number(raw: RawValue<'_>) -> Result<f64, Refusal> {
    let x = match raw {
        RawValue::Float(x) => x,
        // Precision loss is irrelevant for a base or a factor.
        #[allow(clippy::cast_precision_loss)]
        RawValue::Integer(n) => n as f64,
        RawValue::Text(text) => duration::parse_number(text)
            .ok_or_else(|| Refusal::Unparsed("not a number".to_owned()))?,
        other => return Err(wrong_type(other)),
    };
    Ok(x)
}

fn duration(raw: RawValue<'_>) -> Result<Duration, Refusal> {
    let result = match raw {
        RawValue::Text(text) => duration::parse_duration(text),
        other => duration::seconds(number(other)?),
    };
    result.map_err(|problem| match problem {
        DurationProblem::NotADuration => Refusal::Unparsed("not a duration".to_owned()),
        DurationProblem::NotFinite => Refusal::Unparsed("not a finite number".to_owned()),
        DurationProblem::OutOfRange(secs) => Refusal::Range(format!("{} s", Number(secs))),
    })
}

fn boolean(raw: RawValue<'_>) -> Result<bool, Refusal> {
    match raw {
        RawValue::Bool(b) => Ok(b),
        RawValue::Integer(0) => Ok(false),
        RawValue::Integer(1) => Ok(true),
        RawValue::Text(text) => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(Refusal::Unparsed("not a boolean".to_owned())),
        },
        other => Err(wrong_type(other)),
    }
}
