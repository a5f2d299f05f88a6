//! Token rules (TTL range, agent IDs under `/mandate/agent/`) and the agent API caller check.

use super::*;
use crate::pruning::{Prunable, prune};
use crate::store::{SledStore, Store};

fn registry(dir: &std::path::Path) -> Registry {
    let store: Arc<dyn Store> = Arc::new(SledStore::open(dir).unwrap());
    Registry::open(store).unwrap()
}

#[tokio::test]
async fn token_ttl_and_agent_id_rules() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let td = TrustDomain::new("example.org").unwrap();
    let now = SystemTime::now();
    let second = Duration::from_secs(1);
    // (agent ID, TTL, accepted): TTL edges 0, 1 s, max, max + 1 s, absurd; agent IDs.
    let agent = Some("spiffe://example.org/mandate/agent/a");
    let cases = [
        (None, Duration::ZERO, false),
        (None, second, true),
        (None, MAX_TOKEN_TTL, true),
        (None, MAX_TOKEN_TTL + second, false),
        (None, Duration::MAX, false),
        (
            None,
            Duration::from_secs(500_000_000_000 * 31_557_600),
            false,
        ),
        (agent, DEFAULT_TOKEN_TTL, true),
        (
            Some("spiffe://example.org/mandate/server"),
            DEFAULT_TOKEN_TTL,
            false,
        ),
        (
            Some("spiffe://example.org/mandate/agent"),
            DEFAULT_TOKEN_TTL,
            false,
        ),
        (
            Some("spiffe://example.org/node/1"),
            DEFAULT_TOKEN_TTL,
            false,
        ),
        (
            Some("spiffe://other.org/mandate/agent/a"),
            DEFAULT_TOKEN_TTL,
            false,
        ),
        (
            Some("spiffe://EXAMPLE.org/mandate/agent/a"),
            DEFAULT_TOKEN_TTL,
            false,
        ),
    ];
    for (id, ttl, ok) in cases {
        let got = create_token(&reg, &td, id, ttl, "t".into(), now).await;
        match got {
            Ok(_) => assert!(ok, "{id:?} {ttl:?} accepted"),
            Err(RegistryError::InvalidArgument(m)) => {
                assert!(!ok, "{id:?} {ttl:?}: {m}");
                assert_eq!(m.lines().count(), 1);
            }
            Err(e) => panic!("{id:?} {ttl:?}: {e}"),
        }
    }
}

#[tokio::test]
async fn only_agent_ids_pass_the_agent_api_check() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let now = SystemTime::now();
    // An agent record outside /mandate/agent/ (a store from before the rule) and one inside.
    for id in [
        "spiffe://example.org/node/b",
        "spiffe://example.org/mandate/agent/b",
    ] {
        let agent = AgentRecord {
            spiffe_id: id.into(),
            attested_at: 0,
            expires_at: i64::MAX,
            banned: false,
            serial: "01".into(),
        };
        reg.write(now, |_| {
            let plan = Plan {
                ops: vec![WriteOp::PutAgent(agent)],
                ..Plan::default()
            };
            Ok((plan, ()))
        })
        .await
        .unwrap();
    }
    assert!(authorize_agent(&reg, "spiffe://example.org/mandate/agent/b").is_ok());
    for peer in [
        "spiffe://example.org/node/b",
        "spiffe://example.org/mandate/server",
        "spiffe://example.org/ai/buyer",
        "not a spiffe id",
    ] {
        let refused = authorize_agent(&reg, peer);
        assert!(
            matches!(&refused, Err(RegistryError::PermissionDenied(m)) if m.contains(AGENT_PATH)),
            "{peer}: {refused:?}"
        );
    }
}

#[tokio::test]
async fn expired_tokens_are_pruned_and_used_ones_stay_refused() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let td = TrustDomain::new("example.org").unwrap();
    let t0 = SystemTime::now();
    let second = Duration::from_secs(1);
    let short = create_token(&reg, &td, None, 10 * second, "t".into(), t0)
        .await
        .unwrap();
    let long = create_token(&reg, &td, None, 100 * second, "t".into(), t0)
        .await
        .unwrap();
    // The long token is used, as an attestation marks it.
    let hash = token_hash(&long.token);
    let mut used = reg.store().token(&hash).unwrap().unwrap();
    used.used = true;
    reg.write(t0, |_| {
        let plan = Plan {
            ops: vec![WriteOp::PutToken(hash.clone(), used.clone())],
            ..Plan::default()
        };
        Ok((plan, ()))
    })
    .await
    .unwrap();
    // (time, tokens pruned, short stored, long stored): nothing before expiry, then each at
    // its own expiry; the used one is kept (and refused) until it expires.
    let cases = [
        (t0, 0, true, true),
        (t0 + 9 * second, 0, true, true),
        (t0 + 11 * second, 1, false, true),
        (t0 + 99 * second, 0, false, true),
        (t0 + 101 * second, 1, false, false),
    ];
    for (now, want, short_kept, long_kept) in cases {
        assert_eq!(
            prune(&reg, Prunable::Tokens, now).await.unwrap(),
            want,
            "{now:?}"
        );
        let stored = |t: &str| reg.store().token(&token_hash(t)).unwrap();
        assert_eq!(stored(&short.token).is_some(), short_kept);
        let long_record = stored(&long.token);
        assert_eq!(long_record.is_some(), long_kept);
        assert!(
            !usable(long_record.as_ref(), now),
            "a used token is never usable"
        );
    }
}
