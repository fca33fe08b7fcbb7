//! Durations in carrera.yaml: a key keeps the unit its name says (`...Ms`, `...Sec`,
//! `...Seconds`, `...Hours`) and is a `std::time::Duration` in Rust. Use as
//! `#[serde(with = "duration::ms")]`; a value is a non-negative integer in that unit.

use std::time::Duration;

use serde::de::{Deserializer, Error as _};
use serde::{Deserialize, Serializer};

/// Reads a whole number of `unit`s; negative or fractional values are refused with the unit.
fn read<'de, D: Deserializer<'de>>(d: D, unit_ms: u64, unit: &str) -> Result<Duration, D::Error> {
    let n = i64::deserialize(d).map_err(|e| {
        D::Error::custom(format!(
            "{e}; expected a duration in {unit} (a whole number >= 0)"
        ))
    })?;
    let n = u64::try_from(n).map_err(|_| {
        D::Error::custom(format!(
            "invalid value {n}; expected a duration in {unit} (a whole number >= 0)"
        ))
    })?;
    let ms = n
        .checked_mul(unit_ms)
        .ok_or_else(|| D::Error::custom(format!("{n} {unit} is too long a duration")))?;
    Ok(Duration::from_millis(ms))
}

/// Writes the duration as a whole number of units (rounded down).
fn write<S: Serializer>(v: &Duration, s: S, unit_ms: u64) -> Result<S::Ok, S::Error> {
    let units = v.as_millis() / u128::from(unit_ms);
    s.serialize_u64(u64::try_from(units).unwrap_or(u64::MAX))
}

macro_rules! unit {
    ($name:ident, $ms:expr, $unit:literal) => {
        #[doc = concat!("A duration written in ", $unit, ".")]
        pub mod $name {
            use super::*;

            /// Deserializes a whole number of this unit.
            pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
                read(d, $ms, $unit)
            }

            /// Serializes as a whole number of this unit.
            pub fn serialize<S: Serializer>(v: &Duration, s: S) -> Result<S::Ok, S::Error> {
                write(v, s, $ms)
            }
        }
    };
}

unit!(ms, 1, "milliseconds");
unit!(secs, 1000, "seconds");
unit!(hours, 3_600_000, "hours");

/// Milliseconds of `d` as the `i64` the scheduler crate counts in (saturating).
pub fn as_ms_i64(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Seconds of `d` as `i64` (saturating, rounded down).
pub fn as_secs_i64(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// A duration from milliseconds counted as `i64` (negative = zero).
pub fn from_ms_i64(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// A duration from seconds counted as `i64` (negative = zero).
pub fn from_secs_i64(s: i64) -> Duration {
    Duration::from_secs(u64::try_from(s).unwrap_or(0))
}
