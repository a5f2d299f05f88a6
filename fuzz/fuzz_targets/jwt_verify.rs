//! Fuzzes JWT-SVID parsing and verification (DESIGN 3.1, 3.3) against a real JWKS.
//!
//! Input: the first byte picks a mode.
//! - 0: the rest is the token text.
//! - 1: the rest is a list of (position, byte) edits applied to a valid token; an edited token
//!   must never verify.
//! - otherwise: the rest is `header JSON 0xff claims JSON`, base64url-encoded and signed with
//!   the bundle's own key, so the claim checks after the signature (alg, kid, exp, aud, sub,
//!   the delegation claim) see hostile JSON with a valid signature.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use mandate_core::SpiffeId;
use mandate_core::jwt::{Jwks, JwtKey, JwtSvidClaims, verify};

struct Fixture {
    signer: EcdsaKeyPair,
    jwks: Jwks,
    token: String,
}

const NOW: u64 = 1_800_000_000;

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
        let signer = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .expect("key");
        let key = JwtKey::from_pkcs8_der(pkcs8.as_ref(), "k1").expect("key");
        let jwks = Jwks::new(vec![key.public_jwk()], 1, Duration::from_secs(60));
        let token = key
            .mint(&JwtSvidClaims {
                sub: SpiffeId::new("spiffe://example.org/agent").expect("valid"),
                aud: vec!["svc".into()],
                exp: NOW as i64 + 300,
                iat: NOW as i64,
                delegation: None,
            })
            .expect("mints");
        Fixture {
            signer,
            jwks,
            token,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let now = UNIX_EPOCH + Duration::from_secs(NOW);
    match mode {
        0 => {
            let _ = verify(&String::from_utf8_lossy(rest), &f.jwks, "svc", now);
        }
        1 => {
            let mut token = f.token.clone().into_bytes();
            for edit in rest.chunks_exact(2) {
                let at = usize::from(edit[0]) * 4 % token.len();
                token[at] = edit[1];
            }
            let token = String::from_utf8_lossy(&token).into_owned();
            if token != f.token {
                assert!(
                    verify(&token, &f.jwks, "svc", now).is_err(),
                    "an edited token verified: {token}"
                );
            }
        }
        _ => {
            let split = rest.iter().position(|&b| b == 0xff).unwrap_or(rest.len());
            let (header, claims) = rest.split_at(split);
            let claims = claims.get(1..).unwrap_or(&[]);
            let input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header),
                URL_SAFE_NO_PAD.encode(claims)
            );
            let sig = f
                .signer
                .sign(&SystemRandom::new(), input.as_bytes())
                .expect("signs");
            let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
            if let Ok(claims) = verify(&token, &f.jwks, "svc", now) {
                assert!(claims.exp > NOW as i64, "an expired token verified");
                assert!(
                    claims.aud.iter().any(|a| a == "svc"),
                    "a token for another audience verified"
                );
            }
        }
    }
});
