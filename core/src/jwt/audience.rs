//! Bounds on a JWT-SVID request's audience (issue 11, finding 5): every audience reaches the
//! token, the agent's JWT cache and the server's audit record, so a caller must not be able to
//! make them large. Both the agent's Workload API and the server's `MintJwtSvid` apply this.

/// At most this many audiences in one request.
pub const MAX_AUDIENCES: usize = 16;
/// At most this many bytes in one audience.
pub const MAX_AUDIENCE_LEN: usize = 512;
/// At most this many bytes in all audiences of one request together.
pub const MAX_AUDIENCE_TOTAL: usize = 2048;

/// Why an audience list is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AudienceError {
    /// No audience, or an empty one.
    #[error("audience must be specified")]
    Empty,
    /// More than [`MAX_AUDIENCES`] audiences.
    #[error("too many audiences: {0} (at most {MAX_AUDIENCES})")]
    TooMany(usize),
    /// One audience is longer than [`MAX_AUDIENCE_LEN`] bytes.
    #[error("audience of {0} bytes is too long (at most {MAX_AUDIENCE_LEN})")]
    TooLong(usize),
    /// All audiences together are longer than [`MAX_AUDIENCE_TOTAL`] bytes.
    #[error("audiences of {0} bytes in total are too long (at most {MAX_AUDIENCE_TOTAL})")]
    TooLarge(usize),
}

/// Checks a request's audiences: at least one, none empty, and within the bounds above.
///
/// ```
/// use mandate_core::jwt::{check_audience, AudienceError};
/// assert!(check_audience(&["po-service".to_owned()]).is_ok());
/// assert_eq!(check_audience(&[]), Err(AudienceError::Empty));
/// ```
///
/// # Errors
/// [`AudienceError`] naming the first bound that is broken.
pub fn check_audience(audience: &[String]) -> Result<(), AudienceError> {
    if audience.is_empty() || audience.iter().any(String::is_empty) {
        return Err(AudienceError::Empty);
    }
    if audience.len() > MAX_AUDIENCES {
        return Err(AudienceError::TooMany(audience.len()));
    }
    if let Some(long) = audience.iter().find(|a| a.len() > MAX_AUDIENCE_LEN) {
        return Err(AudienceError::TooLong(long.len()));
    }
    let total: usize = audience.iter().map(String::len).sum();
    if total > MAX_AUDIENCE_TOTAL {
        return Err(AudienceError::TooLarge(total));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(n: usize, len: usize) -> Vec<String> {
        (0..n).map(|_| "a".repeat(len)).collect()
    }

    #[test]
    fn bounds_are_checked_in_order() {
        let cases: &[(Vec<String>, Result<(), AudienceError>)] = &[
            (of(1, 1), Ok(())),
            (of(MAX_AUDIENCES, 128), Ok(())),
            (of(1, MAX_AUDIENCE_LEN), Ok(())),
            (of(4, MAX_AUDIENCE_LEN), Ok(())),
            (vec![], Err(AudienceError::Empty)),
            (vec!["a".into(), String::new()], Err(AudienceError::Empty)),
            (of(MAX_AUDIENCES + 1, 1), Err(AudienceError::TooMany(17))),
            (
                of(2, MAX_AUDIENCE_LEN + 1),
                Err(AudienceError::TooLong(513)),
            ),
            (of(5, MAX_AUDIENCE_LEN), Err(AudienceError::TooLarge(2560))),
            (of(1, 1 << 20), Err(AudienceError::TooLong(1 << 20))),
        ];
        for (audience, expected) in cases {
            assert_eq!(
                &check_audience(audience),
                expected,
                "{} audiences",
                audience.len()
            );
        }
    }
}
