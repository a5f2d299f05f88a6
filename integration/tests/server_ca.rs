//! The server CA against the running binaries: live rotation with overlap (prepare at half
//! life, activate when a sixth remains, drop the old CA when it expires), its journal across
//! a kill -9 restart, and the server CA as an intermediate under an upstream root from PEM files.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod agent_support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use agent_support::*;
use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mandate_core::x509::{parse_pem_certs, split_der_certs, validate_ca};
use mandate_integration::{Agent, Server, ServerOptions, workload};
use mandate_proto::workload::{JwtsvidRequest, ValidateJwtsvidRequest, X509svidResponse};
use rustls_pki_types::{CertificateDer, UnixTime};
use serde_json::Value;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};

/// A CA life short enough for a test yet with room for start-up before half life: notBefore
/// is 10 s back, so the life is 46 s (prepare at +13 s, activate at +28.3 s, expire at +36 s).
const CA_TTL: &str = "36s";
/// Slack for the whole-second times in certificates.
const SLACK: Duration = Duration::from_secs(1);
const WAIT: Duration = Duration::from_secs(45);

fn parse(der: &[u8]) -> X509Certificate<'_> {
    x509_parser::parse_x509_certificate(der).unwrap().1
}

/// notBefore and notAfter of a certificate.
fn validity(der: &[u8]) -> (SystemTime, SystemTime) {
    let v = parse(der).validity().clone();
    let at = |t: i64| SystemTime::UNIX_EPOCH + Duration::from_secs(t.unsigned_abs());
    (at(v.not_before.timestamp()), at(v.not_after.timestamp()))
}

fn key_id(der: &[u8], authority: bool) -> Option<Vec<u8>> {
    parse(der)
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) if !authority => Some(k.0.to_vec()),
            ParsedExtension::AuthorityKeyIdentifier(a) if authority => {
                a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })
}

/// True when `cert` names `ca` as its issuer (DN and AKI = SKI) and carries its signature.
fn issued_by(cert: &[u8], ca: &[u8]) -> bool {
    let (c, a) = (parse(cert), parse(ca));
    c.issuer().as_raw() == a.subject().as_raw()
        && key_id(cert, true).is_some()
        && key_id(cert, true) == key_id(ca, false)
        && c.verify_signature(Some(a.public_key())).is_ok()
}

/// Path validation with rustls-webpki: `chain` (leaf first) against `roots` only, now.
fn verifies(chain: &[Vec<u8>], roots: &[Vec<u8>]) -> bool {
    let roots: Vec<CertificateDer<'_>> =
        roots.iter().map(|r| CertificateDer::from(&r[..])).collect();
    let anchors: Vec<_> = roots
        .iter()
        .map(|r| webpki::anchor_from_trusted_cert(r).unwrap())
        .collect();
    let leaf = CertificateDer::from(&chain[0][..]);
    let rest: Vec<CertificateDer<'_>> = chain[1..]
        .iter()
        .map(|c| CertificateDer::from(&c[..]))
        .collect();
    let ee = webpki::EndEntityCert::try_from(&leaf).unwrap();
    let algs = rustls::crypto::aws_lc_rs::default_provider()
        .signature_verification_algorithms
        .all;
    [
        webpki::KeyUsage::client_auth(),
        webpki::KeyUsage::server_auth(),
    ]
    .into_iter()
    .all(|usage| {
        ee.verify_for_usage(algs, &anchors, &rest, UnixTime::now(), usage, None, None)
            .is_ok()
    })
}

/// The first SVID's chain (leaf first) and the bundle of one Workload API message.
fn svid_and_bundle(m: &X509svidResponse) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let svid = &m.svids[0];
    (
        split_der_certs(&svid.x509_svid).unwrap(),
        split_der_certs(&svid.bundle).unwrap(),
    )
}

fn bundle_show(server: &Server) -> Result<Vec<Vec<u8>>> {
    Ok(parse_pem_certs(&server.cli_ok(&["bundle", "show"])?)?)
}

fn kids(jwks: &Value) -> Vec<String> {
    let mut kids: Vec<String> = jwks["keys"]
        .as_array()
        .map(|keys| {
            keys.iter()
                .filter_map(|k| k["kid"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    kids.sort();
    kids
}

/// The JWT bundle of example.org from a fresh FetchJWTBundles call.
async fn jwks(socket: &Path) -> Result<Value> {
    workload::jwt_bundle(&mut workload::client(socket).await?).await
}

/// Polls the JWKS until `accept` likes its kids.
async fn wait_kids(socket: &Path, accept: impl Fn(&[String]) -> bool) -> Result<Vec<String>> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let seen = kids(&jwks(socket).await?);
        if accept(&seen) {
            return Ok(seen);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out waiting for the JWKS; last kids: {seen:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Mints a JWT-SVID for `audience` (fresh audiences miss the agent's cache); returns it and its
/// header's kid.
async fn mint_jwt(socket: &Path, audience: &str) -> Result<(String, String)> {
    let mut client = workload::client(socket).await?;
    let request = JwtsvidRequest {
        audience: vec![audience.to_owned()],
        spiffe_id: String::new(),
    };
    let reply = client
        .fetch_jwtsvid(with_header(request))
        .await?
        .into_inner();
    let token = reply.svids.first().context("one JWT-SVID")?.svid.clone();
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap())?)?;
    let kid = header["kid"].as_str().context("kid")?.to_owned();
    Ok((token, kid))
}

/// ValidateJWTSVID through the agent; returns the SPIFFE ID it names.
async fn validate_jwt(socket: &Path, audience: &str, token: &str) -> Result<String> {
    let mut client = workload::client(socket).await?;
    let request = ValidateJwtsvidRequest {
        audience: audience.to_owned(),
        svid: token.to_owned(),
    };
    Ok(client
        .validate_jwtsvid(with_header(request))
        .await?
        .into_inner()
        .spiffe_id)
}

#[tokio::test(flavor = "multi_thread")]
async fn ca_rotates_live_with_overlap_and_keeps_its_journal_across_a_restart() -> Result<()> {
    let mut server = Server::start_with(ServerOptions {
        config: format!("ca_ttl = \"{CA_TTL}\"\n"),
        ..ServerOptions::default()
    })?;
    let start = bundle_show(&server)?;
    assert_eq!(start.len(), 1, "one CA at start");
    let ca1 = start[0].clone();
    let (nb1, na1) = validity(&ca1);
    let life1 = na1.duration_since(nb1)?;
    let (prepare_at, activate_at) = (nb1 + life1 / 2, na1 - life1 / 6);

    let agent = Agent::start(&server, "ca-rotation")?;
    let socket = agent.socket_path.clone();
    entry_for_me(&server, &agent, "workload/rotating", &[])?;

    // Before half life: one CA signs and is the whole bundle; one JWT key.
    let first = wait_x509(&socket, WAIT, |m| !m.svids.is_empty()).await?;
    let (chain, bundle) = svid_and_bundle(&first);
    assert!(
        SystemTime::now() < prepare_at,
        "start-up took past half life"
    );
    assert_eq!(bundle, vec![ca1.clone()]);
    assert_eq!(chain.len(), 1, "a self-signed CA sends no intermediate");
    assert!(issued_by(&chain[0], &ca1) && verifies(&chain, &bundle));
    let kid1 = wait_kids(&socket, |k| !k.is_empty()).await?;
    assert_eq!(kid1.len(), 1);
    let (_, before_kid) = mint_jwt(&socket, "before-rotation").await?;
    assert_eq!(before_kid, kid1[0]);

    // Half life: the next CA is prepared and published beside the active one.
    let prepared = wait_x509(&socket, WAIT, |m| svid_and_bundle(m).1.len() >= 2).await?;
    assert!(
        SystemTime::now() + SLACK >= prepare_at,
        "prepared before half life"
    );
    assert!(SystemTime::now() < activate_at, "prepared too late");
    let (chain, bundle) = svid_and_bundle(&prepared);
    assert_eq!(bundle.len(), 2);
    assert!(bundle.contains(&ca1), "the active CA stays");
    let ca2 = bundle.into_iter().find(|c| *c != ca1).unwrap();
    assert_eq!(validate_ca(&ca2)?.to_string(), "example.org");
    assert!(
        issued_by(&chain[0], &ca1),
        "the prepared CA is not active yet"
    );
    let both_kids = wait_kids(&socket, |k| k.len() == 2).await?;
    let kid2 = both_kids.into_iter().find(|k| *k != kid1[0]).unwrap();

    // Kill -9 mid-way: the journal brings back the same CAs and JWT keys.
    let shown = server.cli_json(&["bundle", "show"])?;
    server.restart()?;
    let again = server.cli_json(&["bundle", "show"])?;
    let pems = |v: &Value| {
        let mut pems: Vec<String> = serde_json::from_value(v["x509_authorities"].clone()).unwrap();
        pems.sort();
        pems
    };
    assert_eq!(pems(&again), pems(&shown));
    let mut roots = bundle_show(&server)?;
    roots.sort();
    let mut expected = vec![ca1.clone(), ca2.clone()];
    expected.sort();
    assert_eq!(roots, expected, "the same two CAs after the restart");
    assert_eq!(kids(&again["jwks"]), kids(&shown["jwks"]));

    // A sixth left: SVIDs come from the prepared CA (the one from before the restart); the
    // old CA stays trusted until it expires.
    let activated = wait_x509(&socket, WAIT, |m| {
        m.svids.first().is_some_and(|s| {
            let chain = split_der_certs(&s.x509_svid).unwrap();
            issued_by(&chain[0], &ca2)
        })
    })
    .await?;
    let now = SystemTime::now();
    assert!(
        now + SLACK >= activate_at,
        "activated before a sixth remained"
    );
    let (chain, bundle) = svid_and_bundle(&activated);
    assert!(!issued_by(&chain[0], &ca1));
    assert!(
        verifies(&chain, &bundle),
        "the new SVID verifies against the bundle"
    );
    assert!(verifies(&chain, std::slice::from_ref(&ca2)));
    assert!(!verifies(&chain, std::slice::from_ref(&ca1)));
    if now + SLACK < na1 {
        assert!(
            bundle.contains(&ca1),
            "old CA left the bundle before it expired"
        );
    }
    let (token, kid) = mint_jwt(&socket, "after-activation").await?;
    assert_eq!(kid, kid2, "JWT-SVIDs are signed with the new key");
    assert!(jwks_has(&socket, &kid2).await?);
    let sub = validate_jwt(&socket, "after-activation", &token).await?;
    assert_eq!(sub, id("workload/rotating"));

    // The old CA expires: it leaves the bundle and its JWT key the JWKS; the SVID still verifies.
    let pruned = wait_x509(&socket, WAIT, |m| !svid_and_bundle(m).1.contains(&ca1)).await?;
    assert!(
        SystemTime::now() + SLACK >= na1,
        "old CA dropped before it expired"
    );
    let (chain, bundle) = svid_and_bundle(&pruned);
    assert!(bundle.contains(&ca2));
    assert!(issued_by(&chain[0], &ca2) && verifies(&chain, &bundle));
    assert!(!bundle_show(&server)?.contains(&ca1));
    let left = wait_kids(&socket, |k| !k.contains(&kid1[0])).await?;
    assert!(left.contains(&kid2), "{left:?}");
    assert_eq!(
        validate_jwt(&socket, "after-activation", &token).await?,
        sub
    );
    Ok(())
}

async fn jwks_has(socket: &Path, kid: &str) -> Result<bool> {
    Ok(kids(&jwks(socket).await?).iter().any(|k| k == kid))
}

/// A self-signed upstream root for example.org, written as PEM files (key 0600) into `dir`.
fn upstream_root(dir: &Path) -> Result<(Vec<u8>, String)> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Test Upstream Root");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    params.subject_alt_names = vec![rcgen::SanType::URI("spiffe://example.org".try_into()?)];
    let cert = params.self_signed(&key)?;
    let (cert_path, key_path) = (dir.join("upstream.pem"), dir.join("upstream.key"));
    fs::write(&cert_path, cert.pem())?;
    fs::write(&key_path, key.serialize_pem())?;
    fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600))?;
    let config = format!(
        "upstream_ca_cert = {:?}\nupstream_ca_key = {:?}\n",
        cert_path.display().to_string(),
        key_path.display().to_string()
    );
    Ok((cert.der().to_vec(), config))
}

#[tokio::test(flavor = "multi_thread")]
async fn server_ca_runs_as_an_intermediate_under_an_upstream_root() -> Result<()> {
    let files = tempfile::tempdir()?;
    let (root, config) = upstream_root(files.path())?;
    let server = Server::start_with(ServerOptions {
        config,
        ..ServerOptions::default()
    })?;
    assert_eq!(
        bundle_show(&server)?,
        vec![root.clone()],
        "the bundle is the upstream root"
    );

    // The agent attests trusting only the upstream root (the harness hands it `bundle show`).
    let agent = Agent::start(&server, "upstream")?;
    entry_for_me(&server, &agent, "workload/upstream", &[])?;
    let message = wait_x509(&agent.socket_path, WAIT, |m| !m.svids.is_empty()).await?;
    let (chain, bundle) = svid_and_bundle(&message);
    assert_eq!(bundle, vec![root.clone()]);
    assert_eq!(chain.len(), 2, "leaf + server CA");
    let (leaf, intermediate) = (&chain[0], &chain[1]);
    assert_ne!(intermediate, &root);

    // The chain verifies against the root alone, and only with the intermediate.
    assert!(verifies(&chain, std::slice::from_ref(&root)));
    assert!(!verifies(&chain[..1], std::slice::from_ref(&root)));
    assert!(issued_by(leaf, intermediate));
    assert!(!issued_by(leaf, &root));

    // The intermediate is a CA for example.org signed by the root.
    assert_eq!(validate_ca(intermediate)?.to_string(), "example.org");
    assert!(
        issued_by(intermediate, &root),
        "the server CA is signed by the root"
    );
    let uris: Vec<String> = parse(intermediate)
        .subject_alternative_name()?
        .context("SAN")?
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some((*u).to_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(uris, vec!["spiffe://example.org".to_owned()]);
    let leaf_id = &message.svids[0].spiffe_id;
    assert_eq!(leaf_id, &id("workload/upstream"));
    Ok(())
}
