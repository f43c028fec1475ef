//! Kernel versions (`3.9`, `6.12.5`) and version ranges (`>=3.9,<4.6`): how the matrix is
//! ordered, how a claim's scope is read, and which kernels get which boot-time adjustments.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A kernel version as dotted numbers (`3.9`, `6.12.5`); missing components compare as zero.
#[derive(Debug, Clone, Serialize)]
#[serde(into = "String")]
pub struct Version(pub Vec<u32>);

impl Version {
    /// Reads the leading dotted numbers of `text` (`6.1.0-28-amd64` is 6.1.0); `None` when it
    /// does not start with a number.
    pub fn parse_prefix(text: &str) -> Option<Version> {
        let mut parts = Vec::new();
        for piece in text.split('.') {
            let digits: String = piece.chars().take_while(char::is_ascii_digit).collect();
            if digits.is_empty() {
                break;
            }
            parts.push(digits.parse().ok()?);
            if digits.len() != piece.len() {
                break;
            }
        }
        (!parts.is_empty()).then_some(Version(parts))
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let n = self.0.len().max(other.0.len());
        (0..n)
            .map(|i| {
                self.0
                    .get(i)
                    .copied()
                    .unwrap_or(0)
                    .cmp(&other.0.get(i).copied().unwrap_or(0))
            })
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Version {}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(u32::to_string).collect();
        f.write_str(&parts.join("."))
    }
}

impl TryFrom<String> for Version {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let parts: Result<Vec<u32>, _> = text.split('.').map(str::parse::<u32>).collect();
        match parts {
            Ok(p) if !p.is_empty() => Ok(Version(p)),
            _ => Err(format!(
                "`{text}` is not a kernel version like \"3.9\" or \"4.5\""
            )),
        }
    }
}

impl From<Version> for String {
    fn from(v: Version) -> String {
        v.to_string()
    }
}

/// `*` (every version), or comma-separated bounds: `>=3.9`, `<3.9`, `>=3.9,<4.6`, `<=4.4`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct VersionRange {
    pub bounds: Vec<(Bound, Version)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Bound {
    AtLeast,
    Above,
    Below,
    AtMost,
}

impl VersionRange {
    pub fn contains(&self, v: &Version) -> bool {
        self.bounds.iter().all(|(bound, at)| match bound {
            Bound::AtLeast => v >= at,
            Bound::Above => v > at,
            Bound::Below => v < at,
            Bound::AtMost => v <= at,
        })
    }
}

impl fmt::Display for VersionRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.bounds.is_empty() {
            return f.write_str("*");
        }
        let parts: Vec<String> = self
            .bounds
            .iter()
            .map(|(b, v)| {
                let op = match b {
                    Bound::AtLeast => ">=",
                    Bound::Above => ">",
                    Bound::Below => "<",
                    Bound::AtMost => "<=",
                };
                format!("{op}{v}")
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

impl TryFrom<String> for VersionRange {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        if text.trim() == "*" {
            return Ok(VersionRange { bounds: Vec::new() });
        }
        let mut bounds = Vec::new();
        for part in text.split(',') {
            let part = part.trim();
            let (bound, rest) = if let Some(r) = part.strip_prefix(">=") {
                (Bound::AtLeast, r)
            } else if let Some(r) = part.strip_prefix("<=") {
                (Bound::AtMost, r)
            } else if let Some(r) = part.strip_prefix('>') {
                (Bound::Above, r)
            } else if let Some(r) = part.strip_prefix('<') {
                (Bound::Below, r)
            } else {
                return Err(format!(
                    "`{text}` is not a version range: use `*`, `>=3.9`, `<3.9` or `>=3.9,<4.6`"
                ));
            };
            bounds.push((bound, Version::try_from(rest.trim().to_owned())?));
        }
        Ok(VersionRange { bounds })
    }
}

/// Deserializes through `TryFrom<String>` with the error raised while the scalar is current, so
/// the YAML error points at the scalar itself (serde's `try_from` would point at the claim).
struct ParsedFromStr<T>(std::marker::PhantomData<T>);

impl<T: TryFrom<String, Error = String>> serde::de::Visitor<'_> for ParsedFromStr<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a quoted string")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
        T::try_from(v.to_owned()).map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(ParsedFromStr(std::marker::PhantomData))
    }
}

impl<'de> Deserialize<'de> for VersionRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(ParsedFromStr(std::marker::PhantomData))
    }
}

impl From<VersionRange> for String {
    fn from(r: VersionRange) -> String {
        r.to_string()
    }
}
