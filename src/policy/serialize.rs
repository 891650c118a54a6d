//! `RetryConfig` as a configuration-file section (serde).
//!
//! Deserializing reads each value as what it is (text, number, boolean) and hands it to the same
//! rules as the environment variables, so a file accepts `max_delay = 2` and
//! `max_delay = "2s"` alike. Errors never quote a value: serde's own "invalid type" messages
//! would (`invalid type: string "postgres://app:…"`), which is why no field is deserialized by
//! serde's derived code.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use super::RetryConfig;
use super::origin::Origin;
use super::setting::{Field, RawValue, Value};

impl Serialize for RetryConfig {
    /// The settings that are set, durations as seconds.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let set: Vec<_> = Field::ALL
            .into_iter()
            .filter_map(|field| Some((field, self.get(field)?.value)))
            .collect();
        let mut map = serializer.serialize_map(Some(set.len()))?;
        for (field, value) in set {
            match value {
                Value::Count(n) => map.serialize_entry(field.key(), &n)?,
                Value::Duration(d) => map.serialize_entry(field.key(), &d.as_secs_f64())?,
                Value::Number(x) => map.serialize_entry(field.key(), &x)?,
                Value::Bool(b) => map.serialize_entry(field.key(), &b)?,
                Value::Strategy(s) => map.serialize_entry(field.key(), s.name())?,
                Value::Seed(s) => map.serialize_entry(field.key(), &s)?,
            }
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for RetryConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(SectionVisitor)
    }
}

struct SectionVisitor;

impl<'de> Visitor<'de> for SectionVisitor {
    type Value = RetryConfig;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a table of retry settings")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RetryConfig, A::Error> {
        let mut config = RetryConfig::default();
        while let Some(key) = map.next_key::<String>()? {
            let value: Raw = map.next_value()?;
            let raw = match &value {
                Raw::Unset => continue,
                Raw::Text(text) => RawValue::Text(text),
                Raw::Integer(n) => RawValue::Integer(*n),
                Raw::Float(x) => RawValue::Float(*x),
                Raw::Bool(b) => RawValue::Bool(*b),
                Raw::Other(what) => RawValue::Other(what),
            };
            config
                .set(&key, raw, Origin::Deserialized)
                .map_err(de::Error::custom)?;
        }
        Ok(config)
    }
}

/// Any value, kept only as much as a setting needs; lists and tables are skipped, not quoted.
enum Raw {
    Unset,
    Text(String),
    Integer(i128),
    Float(f64),
    Bool(bool),
    Other(&'static str),
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number, a string or a boolean")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Raw, E> {
        Ok(Raw::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Raw, E> {
        Ok(Raw::Integer(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Raw, E> {
        Ok(Raw::Integer(n.into()))
    }

    fn visit_i128<E>(self, n: i128) -> Result<Raw, E> {
        Ok(Raw::Integer(n))
    }

    fn visit_u128<E>(self, n: u128) -> Result<Raw, E> {
        Ok(i128::try_from(n).map_or(Raw::Other("a huge integer"), Raw::Integer))
    }

    fn visit_f64<E>(self, x: f64) -> Result<Raw, E> {
        Ok(Raw::Float(x))
    }

    fn visit_str<E>(self, text: &str) -> Result<Raw, E> {
        Ok(Raw::Text(text.to_owned()))
    }

    fn visit_bytes<E>(self, _: &[u8]) -> Result<Raw, E> {
        Ok(Raw::Other("bytes"))
    }

    fn visit_none<E>(self) -> Result<Raw, E> {
        Ok(Raw::Unset)
    }

    fn visit_unit<E>(self) -> Result<Raw, E> {
        Ok(Raw::Unset)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Raw, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Raw::Other("a list"))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Raw::Other("a table"))
    }
}
