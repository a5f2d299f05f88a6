//! Forged and replayed JWT-SVIDs against the real agent's `ValidateJWTSVID` (DESIGN 3.1): alg
//! `none`, HS256 keyed with the public key, a wrong audience, expiry, tampering, unknown and
//! missing `kid`; and a closed task's JWT-SVID replayed on an open and on a new connection.

mod agent_support;

use std::time::Duration;

use agent_support::*;
use anyhow::{Context, Result};
use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mandate_integration::workload;
use mandate_proto::workload::{JwtsvidRequest, ValidateJwtsvidRequest};
use serde_json::{Value, json};
use tonic::transport::Channel;

type Client = mandate_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient<Channel>;

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn part(token: &str, index: usize) -> Result<Value> {
    let text = token.split('.').nth(index).context("token part")?;
    Ok(serde_json::from_slice(&URL_SAFE_NO_PAD.decode(text)?)?)
}

async fn fetch_jwt(client: &mut Client, audience: &str) -> Result<String> {
    let request = JwtsvidRequest {
        audience: vec![audience.to_owned()],
        spiffe_id: String::new(),
    };
    let response = client
        .fetch_jwtsvid(with_header(request))
        .await?
        .into_inner();
    Ok(response.svids.first().context("one JWT-SVID")?.svid.clone())
}

async fn jwks(client: &mut Client) -> Result<Value> {
    workload::jwt_bundle(client).await
}

async fn validate(client: &mut Client, audience: &str, token: &str) -> Result<(), tonic::Status> {
    let request = ValidateJwtsvidRequest {
        audience: audience.to_owned(),
        svid: token.to_owned(),
    };
    client
        .validate_jwtsvid(with_header(request))
        .await
        .map(|_| ())
}

fn hs256(header: &Value, claims: &Value, key: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_and_tampered_jwt_svids_are_refused() -> Result<()> {
    let (server, agent) = server_and_agent("jwt-forgery")?;
    entry_for_me(&server, &agent, "workload/jwt", &["--jwt-ttl", "3s"])?;
    wait_x509(&agent.socket_path, Duration::from_secs(20), |m| {
        !m.svids.is_empty()
    })
    .await?;
    let mut client = workload::client(&agent.socket_path).await?;
    let token = fetch_jwt(&mut client, "payments").await?;
    validate(&mut client, "payments", &token)
        .await
        .map_err(|s| anyhow::anyhow!("genuine token refused: {s:?}"))?;
    let header = part(&token, 0)?;
    let claims = part(&token, 1)?;
    let keys = jwks(&mut client).await?;
    let jwk = keys["keys"]
        .as_array()
        .context("keys")?
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .context("our kid")?;
    let x = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().context("x")?)?;
    let y = URL_SAFE_NO_PAD.decode(jwk["y"].as_str().context("y")?)?;
    let point = [&[4_u8][..], &x, &y].concat();

    let mut forged: Vec<(&str, String)> = Vec::new();
    // alg none, with and without a signature part.
    let none = json!({"alg": "none", "typ": "JWT", "kid": header["kid"]});
    let unsigned = format!(
        "{}.{}",
        b64(none.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    forged.push(("alg none, empty signature", format!("{unsigned}.")));
    forged.push(("alg none, no signature part", unsigned.clone()));
    // HS256 keyed with every public form of the real key (the classic RS/ES -> HS confusion).
    let hs = json!({"alg": "HS256", "typ": "JWT", "kid": header["kid"]});
    forged.push(("HS256 keyed with the EC point", hs256(&hs, &claims, &point)));
    forged.push((
        "HS256 keyed with the JWK text",
        hs256(&hs, &claims, jwk.to_string().as_bytes()),
    ));
    forged.push(("HS256 keyed with x", hs256(&hs, &claims, &x)));
    // Tampering: a changed subject, audience or expiry keeps the old signature.
    let signature = token.rsplit('.').next().context("signature")?;
    for (what, member, value) in [
        ("tampered sub", "sub", json!("spiffe://example.org/admin")),
        ("tampered exp", "exp", json!(4_000_000_000_i64)),
        ("tampered aud", "aud", json!(["payments", "other"])),
    ] {
        let mut changed = claims.clone();
        changed[member] = value;
        let body = b64(changed.to_string().as_bytes());
        let head = token.split('.').next().context("header")?;
        forged.push((what, format!("{head}.{body}.{signature}")));
    }
    // kid games: missing, unknown.
    for (what, kid) in [("no kid", Value::Null), ("unknown kid", json!("not-a-kid"))] {
        let mut h = header.clone();
        h["kid"] = kid;
        let head = b64(h.to_string().as_bytes());
        let rest = token.split_once('.').context("dot")?.1;
        forged.push((what, format!("{head}.{rest}")));
    }
    forged.push(("garbage", "a.b.c".to_owned()));
    forged.push(("empty parts", "..".to_owned()));

    for (what, token) in &forged {
        let status = validate(&mut client, "payments", token)
            .await
            .err()
            .with_context(|| format!("{what}: accepted"))?;
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{what}: {status:?}"
        );
    }
    // Wrong audience.
    let status = validate(&mut client, "other-service", &token)
        .await
        .err()
        .context("wrong audience accepted")?;
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    // Expiry: the 3 s token is refused once its exp has passed.
    let exp = claims["exp"].as_i64().context("exp")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    tokio::time::sleep(Duration::from_secs((exp - now + 1).max(0) as u64)).await;
    let status = validate(&mut client, "payments", &token)
        .await
        .err()
        .context("expired token accepted")?;
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("expired"), "{}", status.message());
    Ok(())
}

/// DESIGN 1.6: once a task closes, "verifiers refuse the task's credentials on the next
/// request". A service that checks JWT-SVIDs through the agent's `ValidateJWTSVID` is such a
/// verifier, so a closed task's token must be refused there too, on a connection opened before
/// the close and on a new one.
#[tokio::test(flavor = "multi_thread")]
async fn a_closed_tasks_jwt_svid_is_refused_on_open_and_new_connections() -> Result<()> {
    let (server, agent) = server_and_agent("jwt-replay")?;
    let task = server.cli_ok(&[
        "task",
        "open",
        "--principal",
        "user:alice@example.org",
        "--purpose",
        "replay",
        "--action",
        "po.read",
        "--deadline",
        "1h",
    ])?;
    entry_for_me(
        &server,
        &agent,
        "ai/replayer",
        &["--task", &task, "--jwt-ttl", "5m"],
    )?;
    wait_x509(&agent.socket_path, Duration::from_secs(20), |m| {
        !m.svids.is_empty()
    })
    .await?;
    let mut open = workload::client(&agent.socket_path).await?;
    let token = fetch_jwt(&mut open, "po-service").await?;
    assert_eq!(part(&token, 1)?["delegation"]["task"]["id"], task.as_str());
    validate(&mut open, "po-service", &token)
        .await
        .map_err(|s| anyhow::anyhow!("valid before close: {s:?}"))?;

    server.cli_ok(&["task", "close", &task, "--reason", "replay test"])?;
    // DESIGN 3.7: the agent learns of a close within 1 s; give it 1.5 s.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let on_open = validate(&mut open, "po-service", &token).await;
    let mut fresh = workload::client(&agent.socket_path).await?;
    let on_new = validate(&mut fresh, "po-service", &token).await;
    assert!(
        on_open.is_err(),
        "closed task's JWT-SVID still validates on the open connection"
    );
    assert!(
        on_new.is_err(),
        "closed task's JWT-SVID still validates on a new connection"
    );
    Ok(())
}
