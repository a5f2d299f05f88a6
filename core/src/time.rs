//! Rotation and expiry math. Every function is pure and takes `now`, so it is tested with
//! fixed times.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How far an SVID's notBefore is set back from the time of issue (DESIGN 3.2).
pub const NOT_BEFORE_BACKDATE: Duration = Duration::from_secs(10);

/// Errors from parsing a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DurationError {
    /// The text is not a humantime duration such as `90s`, `5m` or `1h`.
    #[error("invalid duration {text:?}: {reason} (write it like 90s, 5m or 1h)")]
    Invalid {
        /// The offending text.
        text: String,
        /// Why it did not parse.
        reason: String,
    },
    /// The duration is zero.
    #[error("duration must be greater than zero")]
    Zero,
    /// The duration is outside the range the flag allows.
    #[error("duration {text:?} is out of range: it must be between {min} and {max}")]
    OutOfRange {
        /// The offending text.
        text: String,
        /// The shortest allowed, humantime-formatted.
        min: String,
        /// The longest allowed, humantime-formatted.
        max: String,
    },
}

/// Truncates a time down to whole seconds since the epoch (times before the epoch become the
/// epoch).
pub fn truncate_to_seconds(t: SystemTime) -> SystemTime {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// Whole seconds since the unix epoch (negative before it, rounded towards negative infinity).
pub fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => {
            let d = e.duration();
            let whole = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            if d.subsec_nanos() > 0 {
                -whole.saturating_add(1)
            } else {
                -whole
            }
        }
    }
}

/// The time `secs` whole seconds from the unix epoch, or `None` when the platform's
/// `SystemTime` cannot hold it.
pub fn checked_from_unix_seconds(secs: i64) -> Option<SystemTime> {
    let magnitude = Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 {
        UNIX_EPOCH.checked_add(magnitude)
    } else {
        UNIX_EPOCH.checked_sub(magnitude)
    }
}

/// The time `secs` whole seconds from the unix epoch. Never panics: a value the platform
/// cannot hold (such as `i64::MIN`) becomes the epoch, so range checks on the result refuse it
/// rather than the conversion crashing. Use [`checked_from_unix_seconds`] to tell.
pub fn from_unix_seconds(secs: i64) -> SystemTime {
    checked_from_unix_seconds(secs).unwrap_or(UNIX_EPOCH)
}

/// The notAfter of an SVID: the earliest of `now + ttl`, the task deadline and the CA's
/// notAfter, truncated down to whole seconds. An SVID never outlives its task or its CA
/// (DESIGN 3.3, "Expiry").
pub fn svid_not_after(
    now: SystemTime,
    ttl: Duration,
    task_deadline: Option<SystemTime>,
    ca_not_after: SystemTime,
) -> SystemTime {
    let mut end = now
        .checked_add(ttl)
        .unwrap_or(ca_not_after)
        .min(ca_not_after);
    if let Some(deadline) = task_deadline {
        end = end.min(deadline);
    }
    truncate_to_seconds(end)
}

/// The notBefore of an SVID: `now` minus 10 s, in whole seconds (DESIGN 3.7, "Timing").
pub fn svid_not_before(now: SystemTime) -> SystemTime {
    truncate_to_seconds(now.checked_sub(NOT_BEFORE_BACKDATE).unwrap_or(UNIX_EPOCH))
}

/// True once an SVID should be renewed: from half its life, brought forward by `jitter`
/// (capped at a quarter of the life), or once it has expired.
pub fn should_rotate(
    now: SystemTime,
    not_before: SystemTime,
    not_after: SystemTime,
    jitter: Duration,
) -> bool {
    if now >= not_after {
        return true;
    }
    let life = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO);
    let jitter = jitter.min(life / 4);
    let rotate_at = not_before + life / 2 - jitter;
    now >= rotate_at
}

/// Where a CA is in its life, which decides when its successor is prepared and activated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CaPhase {
    /// Before half life: keep signing, nothing to do.
    Active,
    /// From half life: prepare the next CA and publish it in the bundle.
    PrepareNext,
    /// When a sixth of the life or less remains (or it expired): sign with the next CA.
    ActivateNext,
}

/// The phase of a CA valid from `not_before` to `not_after` at `now`.
pub fn ca_phase(now: SystemTime, not_before: SystemTime, not_after: SystemTime) -> CaPhase {
    if now >= not_after {
        return CaPhase::ActivateNext;
    }
    let life = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO);
    let remaining = not_after.duration_since(now).unwrap_or(Duration::ZERO);
    if remaining <= life / 6 {
        CaPhase::ActivateNext
    } else if now >= not_before + life / 2 {
        CaPhase::PrepareNext
    } else {
        CaPhase::Active
    }
}

/// Parses a humantime duration such as `90s`, `5m` or `1h`.
///
/// # Errors
/// [`DurationError::Invalid`] when the text does not parse, [`DurationError::Zero`] for zero.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| DurationError::Invalid {
        text: text.to_owned(),
        reason: e.to_string(),
    })?;
    if d.is_zero() {
        return Err(DurationError::Zero);
    }
    Ok(d)
}

/// Parses a humantime duration and checks that it lies in `min..=max`.
///
/// # Errors
/// [`DurationError::Invalid`] when the text does not parse, [`DurationError::Zero`] for zero,
/// [`DurationError::OutOfRange`] outside `min..=max`.
pub fn parse_duration_within(
    text: &str,
    min: Duration,
    max: Duration,
) -> Result<Duration, DurationError> {
    let d = parse_duration(text)?;
    if (min..=max).contains(&d) {
        Ok(d)
    } else {
        Err(DurationError::OutOfRange {
            text: text.to_owned(),
            min: whole_units(min),
            max: whole_units(max),
        })
    }
}

/// A range bound as an operator writes it: `30 days`, `1 day`, `2h`, `5m` or `90s` (humantime
/// would print 366 days as `1year 18h`).
fn whole_units(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        86_400 => "1 day".to_owned(),
        s if s > 0 && s % 86_400 == 0 => format!("{} days", s / 86_400),
        s if s > 0 && s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s > 0 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn not_after_is_the_earliest_bound() {
        let now = t(1_000);
        let ttl = Duration::from_secs(300);
        // (deadline, ca_not_after, expected)
        let cases = [
            (None, t(10_000), t(1_300)),
            (Some(t(1_100)), t(10_000), t(1_100)),
            (Some(t(5_000)), t(1_200), t(1_200)),
            (Some(t(1_050)), t(1_020), t(1_020)),
        ];
        for (deadline, ca, want) in cases {
            assert_eq!(
                svid_not_after(now, ttl, deadline, ca),
                want,
                "{deadline:?} {ca:?}"
            );
        }
    }

    #[test]
    fn not_after_truncates_and_never_passes_deadline() {
        let now = t(1_000) + Duration::from_millis(700);
        let deadline = t(1_200) + Duration::from_millis(500);
        let got = svid_not_after(now, Duration::from_secs(3_600), Some(deadline), t(99_999));
        assert_eq!(got, t(1_200));
        assert!(got <= deadline);
        let huge = svid_not_after(now, Duration::MAX, None, t(2_000));
        assert_eq!(huge, t(2_000));
    }

    #[test]
    fn not_before_is_ten_seconds_back() {
        assert_eq!(
            svid_not_before(t(1_000) + Duration::from_millis(999)),
            t(990)
        );
        assert_eq!(svid_not_before(t(3)), UNIX_EPOCH);
    }

    #[test]
    fn rotation_fires_at_half_life() {
        let (nb, na) = (t(1_000), t(2_000));
        let cases = [
            (t(1_499), Duration::ZERO, false),
            (t(1_500), Duration::ZERO, true),
            (t(1_399), Duration::from_secs(100), false),
            (t(1_400), Duration::from_secs(100), true),
            // jitter capped at a quarter of the life (250 s)
            (t(1_249), Duration::from_secs(900), false),
            (t(1_250), Duration::from_secs(900), true),
            (t(2_500), Duration::ZERO, true),
            (t(900), Duration::ZERO, false),
        ];
        for (now, jitter, want) in cases {
            assert_eq!(
                should_rotate(now, nb, na, jitter),
                want,
                "{now:?} {jitter:?}"
            );
        }
    }

    #[test]
    fn ca_phases() {
        let (nb, na) = (t(0), t(6_000));
        let cases = [
            (t(0), CaPhase::Active),
            (t(2_999), CaPhase::Active),
            (t(3_000), CaPhase::PrepareNext),
            (t(4_999), CaPhase::PrepareNext),
            (t(5_000), CaPhase::ActivateNext),
            (t(7_000), CaPhase::ActivateNext),
        ];
        for (now, want) in cases {
            assert_eq!(ca_phase(now, nb, na), want, "{now:?}");
        }
    }

    #[test]
    fn unix_seconds_round_trip() {
        for secs in [0_i64, 1, 1_700_000_000, -1, -86_400] {
            assert_eq!(unix_seconds(from_unix_seconds(secs)), secs);
        }
        assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_millis(500)), -1);
        assert_eq!(unix_seconds(t(5) + Duration::from_millis(999)), 5);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3_600)));
        assert_eq!(parse_duration("0s"), Err(DurationError::Zero));
        assert!(matches!(
            parse_duration("soon"),
            Err(DurationError::Invalid { .. })
        ));
        assert!(matches!(
            parse_duration(""),
            Err(DurationError::Invalid { .. })
        ));
    }

    #[test]
    fn bounded_durations_table() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(86_400));
        // (text, accepted): zero, the edges, one past each edge, absurd and overflowing values.
        let cases = [
            ("0s", false),
            ("500ms", false),
            ("1s", true),
            ("24h", true),
            ("1day", true),
            ("86401s", false),
            ("10000y", false),
            ("500000000000y", false),
            ("99999999999999999999999y", false),
            ("-1s", false),
            ("1", false),
        ];
        for (text, ok) in cases {
            assert_eq!(
                parse_duration_within(text, min, max).is_ok(),
                ok,
                "{text:?}"
            );
        }
        let err = parse_duration_within("2days", min, max).expect_err("out of range");
        assert_eq!(
            err.to_string(),
            "duration \"2days\" is out of range: it must be between 1s and 1 day"
        );
    }

    #[test]
    fn range_bounds_print_in_whole_units() {
        let cases = [
            (1, "1s"),
            (90, "90s"),
            (300, "5m"),
            (7_200, "2h"),
            (86_400, "1 day"),
            (2_592_000, "30 days"),
            (31_622_400, "366 days"),
        ];
        for (secs, want) in cases {
            assert_eq!(whole_units(Duration::from_secs(secs)), want);
        }
    }

    #[test]
    fn unix_seconds_conversion_never_panics() {
        for secs in [i64::MIN, i64::MIN + 1, -1, 0, i64::MAX - 1, i64::MAX] {
            let t = from_unix_seconds(secs);
            if let Some(exact) = checked_from_unix_seconds(secs) {
                assert_eq!(t, exact);
            } else {
                assert_eq!(t, UNIX_EPOCH);
            }
        }
    }
}
