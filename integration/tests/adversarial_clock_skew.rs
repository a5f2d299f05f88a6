//! Clock skew of +/-5 min between issuer, agent and verifier, with an injected clock in the
//! pure code (mandate-core's time functions, its rustls verifiers and JWT verification take
//! `now`). What the 10 s notBefore back-dating covers, and what it does not.
//!
//! Findings pinned here (docs/RELIABILITY.md, "Clock skew"): a verifier whose clock is more
//! than 10 s behind the issuer refuses a fresh SVID (and a freshly rotated CA) as not yet
//! valid; an agent whose clock is behind by more than half an SVID's TTL renews it only after
//! it has expired for everyone else.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use mandate_core::jwt::{Jwks, JwtError, JwtKey, JwtSvidClaims, verify};
use mandate_core::time::{NOT_BEFORE_BACKDATE, should_rotate, svid_not_after, svid_not_before};
use mandate_core::tls::{
    SpiffeClientVerifier, SpiffeIdMatcher, SpiffeServerVerifier, shared_roots,
};
use mandate_core::x509::{Ca, CaKey, LeafRequest, generate_p256_keypair};
use mandate_core::{SpiffeId, TrustDomain};
use rustls::client::danger::ServerCertVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

const SKEW: Duration = Duration::from_secs(300);

/// The issuer's "now": a fixed instant, so the test is the same on every run.
fn issued_at() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn unix(t: SystemTime) -> UnixTime {
    UnixTime::since_unix_epoch(t.duration_since(UNIX_EPOCH).expect("after the epoch"))
}

struct Issued {
    ca: Vec<u8>,
    leaf: Vec<u8>,
    not_after: SystemTime,
}

/// A CA created at `ca_at` and a 5-minute leaf issued at `now`, as the server computes them.
fn issue(ca_at: SystemTime, now: SystemTime, ttl: Duration) -> Result<Issued> {
    let td = TrustDomain::new("example.org")?;
    let ca = Ca::self_signed(td, CaKey::generate()?, ca_at, Duration::from_secs(86_400))?;
    let not_after = svid_not_after(now, ttl, None, ca.not_after);
    let request = LeafRequest {
        spiffe_id: SpiffeId::new("spiffe://example.org/ai/buyer")?,
        dns_names: Vec::new(),
        not_before: svid_not_before(now),
        not_after,
        delegation: None,
    };
    let leaf = ca.sign_leaf(&generate_p256_keypair()?, &request)?;
    Ok(Issued {
        ca: ca.cert_der.clone(),
        leaf: leaf.der,
        not_after,
    })
}

/// Whether a verifying peer whose clock reads `verifier_now` accepts the leaf, as a client
/// certificate and as a server certificate.
fn accepted_at(issued: &Issued, verifier_now: SystemTime) -> (bool, bool) {
    let roots = shared_roots(vec![CertificateDer::from(issued.ca.clone())]);
    let leaf = CertificateDer::from(issued.leaf.clone());
    let client = SpiffeClientVerifier::new(Arc::clone(&roots), false);
    let as_client = client
        .verify_client_cert(&leaf, &[], unix(verifier_now))
        .is_ok();
    let server = SpiffeServerVerifier::new(roots, SpiffeIdMatcher::Any);
    let name = ServerName::try_from("localhost").expect("valid name");
    let as_server = server
        .verify_server_cert(&leaf, &[], &name, &[], unix(verifier_now))
        .is_ok();
    (as_client, as_server)
}

#[test]
fn back_dating_covers_a_slow_verifier_up_to_ten_seconds_only() -> Result<()> {
    let now = issued_at();
    // The CA was created an hour earlier; only the leaf's own notBefore matters here.
    let issued = issue(
        now - Duration::from_secs(3_600),
        now,
        Duration::from_secs(300),
    )?;
    assert_eq!(NOT_BEFORE_BACKDATE, Duration::from_secs(10));
    assert_eq!(accepted_at(&issued, now), (true, true));
    assert_eq!(
        accepted_at(&issued, now - Duration::from_secs(9)),
        (true, true),
        "9 s behind: covered"
    );
    assert_eq!(
        accepted_at(&issued, now - Duration::from_secs(11)),
        (false, false),
        "11 s behind: not covered"
    );
    // Finding: a verifier 5 min behind refuses a fresh SVID for its first 290 s.
    assert_eq!(
        accepted_at(&issued, now - SKEW),
        (false, false),
        "5 min behind: not yet valid"
    );
    // A verifier 5 min ahead sees a 5-minute SVID expire at once (notAfter itself is the last
    // valid second).
    assert_eq!(
        accepted_at(&issued, now + SKEW),
        (true, true),
        "notAfter is inclusive"
    );
    assert_eq!(
        accepted_at(&issued, now + SKEW + Duration::from_secs(1)),
        (false, false),
        "5 min ahead: expired"
    );
    assert_eq!(
        accepted_at(&issued, issued.not_after - Duration::from_secs(1)),
        (true, true)
    );
    Ok(())
}

#[test]
fn a_fresh_ca_is_not_yet_valid_for_a_verifier_five_minutes_behind() -> Result<()> {
    let now = issued_at();
    // CA rotation: the new CA and a leaf under it, both made at `now`.
    let issued = issue(now, now, Duration::from_secs(3_600))?;
    assert_eq!(accepted_at(&issued, now), (true, true));
    assert_eq!(accepted_at(&issued, now - SKEW), (false, false));
    Ok(())
}

#[test]
fn jwt_expiry_follows_the_verifiers_clock_and_iat_is_not_checked() -> Result<()> {
    let key = JwtKey::generate()?;
    let jwks = Jwks::new(vec![key.public_jwk()], 1, Duration::from_secs(60));
    let now = 1_800_000_000_i64;
    let claims = JwtSvidClaims {
        sub: SpiffeId::new("spiffe://example.org/ai/buyer")?,
        aud: vec!["svc".into()],
        exp: now + 300,
        iat: now,
        delegation: None,
    };
    let token = key.mint(&claims)?;
    let at = |offset: i64| UNIX_EPOCH + Duration::from_secs((now + offset) as u64);
    // 5 min behind: accepted (JWT-SVIDs carry no nbf, and iat in the future is not refused).
    assert_eq!(verify(&token, &jwks, "svc", at(-300)), Ok(claims.clone()));
    assert_eq!(verify(&token, &jwks, "svc", at(299)), Ok(claims));
    // 5 min ahead: a 5-minute token is already expired.
    assert_eq!(
        verify(&token, &jwks, "svc", at(300)),
        Err(JwtError::Expired)
    );
    Ok(())
}

#[test]
fn an_agent_behind_by_more_than_half_the_ttl_renews_only_after_expiry() {
    let now = issued_at();
    let ttl = Duration::from_secs(300);
    let not_before = svid_not_before(now);
    let not_after = svid_not_after(now, ttl, None, now + Duration::from_secs(86_400));
    // The agent's clock reads `real - skew`. At the real notAfter, does it want a new SVID?
    let renews_by_expiry =
        |skew: Duration| should_rotate(not_after - skew, not_before, not_after, Duration::ZERO);
    assert!(renews_by_expiry(Duration::ZERO));
    assert!(
        renews_by_expiry(Duration::from_secs(100)),
        "100 s behind: renewed before expiry"
    );
    // Finding: 5 min behind with a 5-minute TTL, the agent still holds the SVID as fresh when
    // it has expired for every verifier with a correct clock.
    assert!(
        !renews_by_expiry(SKEW),
        "5 min behind: renewal comes after expiry"
    );
    // An agent ahead of the server renews early, which is harmless.
    assert!(should_rotate(
        now + SKEW,
        not_before,
        not_after,
        Duration::ZERO
    ));
}
