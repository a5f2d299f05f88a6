//! The value types a task is made of: actions, currencies, value limits, approvals, states.

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::TaskError;

/// Longest action name, in bytes.
pub const MAX_ACTION_LEN: usize = 128;

/// An action name the task allows, matched exactly (e.g. `po.draft`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Action(String);

impl Action {
    /// Parses an action name.
    ///
    /// # Errors
    /// [`TaskError::BadAction`] when it is empty, over 128 bytes, or holds whitespace or a
    /// control character.
    pub fn new(text: impl Into<String>) -> Result<Self, TaskError> {
        let text = text.into();
        if text.is_empty()
            || text.len() > MAX_ACTION_LEN
            || text.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(TaskError::BadAction(text));
        }
        Ok(Self(text))
    }

    /// The action name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An ISO 4217 currency code: three ASCII uppercase letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    /// The code as text, e.g. `EUR`.
    pub fn as_str(&self) -> &str {
        // The bytes are ASCII uppercase letters by construction, so this cannot fail.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

/// A spending limit in minor units (hundredths) of a currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ValueLimit {
    /// The amount in hundredths, e.g. 50000 for 500.00.
    pub amount_minor: i64,
    /// The currency.
    pub currency: Currency,
}

/// Who approved a task that required approval, and when.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Approval {
    /// The approver's name.
    pub approver: String,
    /// When it was approved.
    pub approved_at: SystemTime,
}

/// The lifecycle state of a task (DESIGN 3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum TaskState {
    /// Awaiting approval; no SVID is issued.
    Pending,
    /// Open; SVIDs are issued until the deadline.
    Open,
    /// Closed by an operator; never reopens.
    Closed,
    /// The deadline passed; never reopens.
    Expired,
}

impl TaskState {
    /// The state name: `pending`, `open`, `closed` or `expired`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Open => "open",
            Self::Closed => "closed",
            Self::Expired => "expired",
        }
    }

    /// True for `closed` and `expired`, the states no task leaves.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Closed | Self::Expired)
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskState {
    type Err = TaskError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(Self::Pending),
            "open" => Ok(Self::Open),
            "closed" => Ok(Self::Closed),
            "expired" => Ok(Self::Expired),
            other => Err(TaskError::UnknownState(other.to_owned())),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Action {
    type Err = TaskError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Currency {
    type Err = TaskError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.as_bytes() {
            &[a, b, c] if [a, b, c].iter().all(u8::is_ascii_uppercase) => Ok(Self([a, b, c])),
            _ => Err(TaskError::BadCurrency(s.to_owned())),
        }
    }
}

impl FromStr for ValueLimit {
    type Err = TaskError;
    /// Parses `<amount>:<ISO 4217 code>` with at most two decimals, e.g. `500.00:EUR`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || TaskError::BadValueLimit(s.to_owned());
        let (amount, currency) = s.split_once(':').ok_or_else(bad)?;
        let currency: Currency = currency.parse()?;
        let (whole, frac) = amount.split_once('.').unwrap_or((amount, ""));
        let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !digits(whole) || !digits(frac) || frac.len() > 2 {
            return Err(bad());
        }
        if amount.contains('.') && frac.is_empty() {
            return Err(bad());
        }
        let whole: i64 = whole.parse().map_err(|_| bad())?;
        let frac_minor: i64 = match frac.len() {
            0 => 0,
            1 => frac.parse::<i64>().map_err(|_| bad())? * 10,
            _ => frac.parse().map_err(|_| bad())?,
        };
        let amount_minor = whole
            .checked_mul(100)
            .and_then(|m| m.checked_add(frac_minor))
            .ok_or_else(bad)?;
        Ok(Self {
            amount_minor,
            currency,
        })
    }
}

impl fmt::Display for ValueLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.amount_minor < 0 { "-" } else { "" };
        let abs = self.amount_minor.unsigned_abs();
        write!(f, "{sign}{}.{:02}:{}", abs / 100, abs % 100, self.currency)
    }
}

macro_rules! serde_as_text {
    ($name:ident) => {
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

serde_as_text!(Action);
serde_as_text!(Currency);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_limit_table() {
        let cases = [
            ("500.00:EUR", Some(50_000)),
            ("500:EUR", Some(50_000)),
            ("12.5:USD", Some(1_250)),
            ("0.01:JPY", Some(1)),
            ("1.234:EUR", None),
            ("-5:EUR", None),
            ("5.:EUR", None),
            (".5:EUR", None),
            ("5:eur", None),
            ("5:EURO", None),
            ("5", None),
            ("99999999999999999999:EUR", None),
        ];
        for (text, want) in cases {
            let got = text.parse::<ValueLimit>().ok().map(|v| v.amount_minor);
            assert_eq!(got, want, "{text:?}");
        }
        let v: ValueLimit = "12.5:USD".parse().expect("valid");
        assert_eq!(v.to_string(), "12.50:USD");
        assert_eq!(v.to_string().parse::<ValueLimit>(), Ok(v));
    }

    #[test]
    fn action_rules() {
        assert!(Action::new("po.draft").is_ok());
        assert!(Action::new("a".repeat(128)).is_ok());
        assert!(Action::new("a".repeat(129)).is_err());
        assert!(Action::new("").is_err());
        assert!(Action::new("po draft").is_err());
        assert!(Action::new("po\u{7}").is_err());
    }

    #[test]
    fn states_parse_and_print() {
        for s in [
            TaskState::Pending,
            TaskState::Open,
            TaskState::Closed,
            TaskState::Expired,
        ] {
            assert_eq!(s.as_str().parse::<TaskState>(), Ok(s));
        }
        assert!("done".parse::<TaskState>().is_err());
    }
}
