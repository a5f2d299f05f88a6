//! Tests of JWT-SVID minting and verification, including the attacks a verifier must refuse.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::*;
use crate::delegation::tests::sample;
use aws_lc_rs::rand::SystemRandom;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_790_000_000)
}

fn claims() -> JwtSvidClaims {
    JwtSvidClaims {
        sub: SpiffeId::new("spiffe://example.org/ai/buyer").expect("valid"),
        aud: vec!["orders".into(), "billing".into()],
        exp: 1_790_000_300,
        iat: 1_790_000_000,
        delegation: Some(sample()),
    }
}

fn setup() -> (JwtKey, Jwks) {
    let key = JwtKey::generate().expect("key");
    let jwks = Jwks::new(vec![key.public_jwk()], 1, Duration::from_secs(300));
    (key, jwks)
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

fn parts(token: &str) -> (Value, Value) {
    let mut it = token.split('.');
    let mut next = || -> Value {
        let bytes = URL_SAFE_NO_PAD
            .decode(it.next().expect("part"))
            .expect("b64");
        serde_json::from_slice(&bytes).expect("json")
    };
    (next(), next())
}

#[test]
fn mint_and_verify_round_trip() {
    let (key, jwks) = setup();
    let token = key.mint(&claims()).expect("mints");
    let (header, body) = parts(&token);
    assert_eq!(
        header,
        json!({"alg": "ES256", "kid": key.kid(), "typ": "JWT"})
    );
    assert_eq!(body["aud"], json!(["orders", "billing"]));
    assert_eq!(body["delegation"], sample().to_claim());
    assert_eq!(verify(&token, &jwks, "billing", now()), Ok(claims()));
}

#[test]
fn refusals_table() {
    let (key, jwks) = setup();
    let good = key.mint(&claims()).expect("mints");
    let (header, body) = parts(&good);
    let sig = good.rsplit('.').next().expect("sig").to_owned();
    let x = key.public_jwk()["x"].as_str().expect("x").to_owned();

    let hs256 = {
        let h = json!({"alg": "HS256", "kid": key.kid(), "typ": "JWT"});
        let input = format!("{}.{}", b64(&h), b64(&body));
        // The classic confusion attack: HMAC keyed with public key material.
        let mac = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, x.as_bytes()),
            input.as_bytes(),
        );
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref()))
    };
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "kid": key.kid()})),
        b64(&body)
    );
    let no_kid = format!(
        "{}.{}.{sig}",
        b64(&json!({"alg": "ES256", "typ": "JWT"})),
        b64(&body)
    );
    let mut tampered_body = body.clone();
    tampered_body["sub"] = json!("spiffe://example.org/admin");
    let tampered = format!("{}.{}.{sig}", b64(&header), b64(&tampered_body));
    let mut bad_sig = good.clone();
    let last = bad_sig
        .pop()
        .map_or('A', |c| if c == 'A' { 'B' } else { 'A' });
    bad_sig.push(last);
    let other_key = JwtKey::from_pkcs8_der(
        &JwtKey::generate().expect("key").pkcs8_der().expect("pkcs8"),
        key.kid(),
    )
    .expect("loads");
    let same_kid_other_key = other_key.mint(&claims()).expect("mints");
    let expired = key
        .mint(&JwtSvidClaims {
            exp: 1_790_000_000,
            ..claims()
        })
        .expect("mints");
    let bad_sub = {
        let mut b = body.clone();
        b["sub"] = json!("https://example.org/x");
        let input = format!("{}.{}", b64(&header), b64(&b));
        let s = key
            .key
            .sign(&SystemRandom::new(), input.as_bytes())
            .expect("sign");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(s.as_ref()))
    };

    type Expect = fn(&JwtError) -> bool;
    let cases: Vec<(&str, String, &str, Expect)> = vec![
        (
            "alg none",
            none,
            "orders",
            |e| matches!(e, JwtError::UnsupportedAlgorithm(a) if a == "none"),
        ),
        (
            "HS256",
            hs256,
            "orders",
            |e| matches!(e, JwtError::UnsupportedAlgorithm(a) if a == "HS256"),
        ),
        ("missing kid", no_kid, "orders", |e| {
            matches!(e, JwtError::MissingKid)
        }),
        ("wrong aud", good.clone(), "payments", |e| {
            matches!(e, JwtError::AudienceMismatch(_))
        }),
        ("expired", expired, "orders", |e| {
            matches!(e, JwtError::Expired)
        }),
        ("tampered claims", tampered, "orders", |e| {
            matches!(e, JwtError::BadSignature)
        }),
        ("tampered signature", bad_sig, "orders", |e| {
            matches!(e, JwtError::BadSignature | JwtError::Malformed(_))
        }),
        ("other key, same kid", same_kid_other_key, "orders", |e| {
            matches!(e, JwtError::BadSignature)
        }),
        ("bad subject", bad_sub, "orders", |e| {
            matches!(e, JwtError::BadSubject(_))
        }),
        ("two parts", "a.b".into(), "orders", |e| {
            matches!(e, JwtError::Malformed(_))
        }),
        ("too long", "a".repeat(MAX_TOKEN_LEN + 1), "orders", |e| {
            matches!(e, JwtError::TooLong)
        }),
        ("empty audience", good.clone(), "", |e| {
            matches!(e, JwtError::EmptyAudience)
        }),
    ];
    for (name, token, aud, expected) in cases {
        match verify(&token, &jwks, aud, now()) {
            Ok(_) => panic!("{name} should be refused"),
            Err(e) => assert!(expected(&e), "{name}: unexpected {e:?}"),
        }
    }
    let unknown = Jwks::new(
        vec![JwtKey::generate().expect("key").public_jwk()],
        1,
        Duration::ZERO,
    );
    assert!(matches!(
        verify(&good, &unknown, "orders", now()),
        Err(JwtError::UnknownKid(_))
    ));
}

#[test]
fn single_string_audience_is_accepted() {
    let (key, jwks) = setup();
    let header = json!({"alg": "ES256", "kid": key.kid(), "typ": "JWT"});
    let body = json!({"sub": "spiffe://example.org/w", "aud": "orders", "exp": 1_790_000_100});
    let input = format!("{}.{}", b64(&header), b64(&body));
    let s = key
        .key
        .sign(&SystemRandom::new(), input.as_bytes())
        .expect("sign");
    let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(s.as_ref()));
    let c = verify(&token, &jwks, "orders", now()).expect("valid");
    assert_eq!(
        (c.aud, c.iat, c.delegation),
        (vec!["orders".to_owned()], 0, None)
    );
}

#[test]
fn mint_refuses_empty_audience() {
    let (key, _) = setup();
    let c = JwtSvidClaims {
        aud: vec![],
        ..claims()
    };
    assert_eq!(key.mint(&c), Err(JwtError::EmptyAudience));
}

#[test]
fn jwks_round_trip_and_kids() {
    let (key, _) = setup();
    let second = JwtKey::generate().expect("key");
    let jwks = Jwks::new(
        vec![key.public_jwk(), second.public_jwk()],
        42,
        Duration::from_secs(150),
    );
    let json: Value = serde_json::from_slice(&jwks.to_json_bytes()).expect("json");
    assert_eq!(json["spiffe_sequence"], json!(42));
    assert_eq!(json["spiffe_refresh_hint"], json!(150));
    let keys = json["keys"].as_array().expect("keys");
    assert!(
        keys.iter()
            .all(|k| k["kid"].is_string() && k["use"] == "jwt-svid" && k["crv"] == "P-256")
    );
    assert_eq!(
        Jwks::from_json_bytes(&jwks.to_json_bytes()),
        Ok(jwks.clone())
    );
    assert!(jwks.find(second.kid()).is_some());

    let no_kid = br#"{"keys":[{"kty":"EC","crv":"P-256","x":"a","y":"b","use":"jwt-svid"}]}"#;
    assert!(matches!(
        Jwks::from_json_bytes(no_kid),
        Err(JwtError::Jwks(_))
    ));
    assert!(matches!(
        Jwks::from_json_bytes(b"{}"),
        Err(JwtError::Jwks(_))
    ));
    assert!(matches!(
        Jwks::from_json_bytes(b"nope"),
        Err(JwtError::Jwks(_))
    ));
}

#[test]
fn key_reload_keeps_the_public_key() {
    let (key, jwks) = setup();
    let reloaded =
        JwtKey::from_pkcs8_der(&key.pkcs8_der().expect("pkcs8"), key.kid()).expect("loads");
    assert_eq!(reloaded.public_jwk(), key.public_jwk());
    let token = reloaded.mint(&claims()).expect("mints");
    assert!(verify(&token, &jwks, "orders", now()).is_ok());
    assert!(JwtKey::from_pkcs8_der(b"junk", "k").is_err());
    assert!(JwtKey::from_pkcs8_der(&key.pkcs8_der().expect("pkcs8"), "").is_err());
    assert!(!key.public_key_spki_der().expect("spki").is_empty());
}
