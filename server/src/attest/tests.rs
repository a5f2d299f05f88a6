//! Token rules (TTL range, agent IDs under `/mandate/agent/`) and the agent API caller check.

use super::*;
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
