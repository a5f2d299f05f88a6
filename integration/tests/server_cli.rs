//! Every `mandate-server` CLI command round-trips in text and JSON (DESIGN 3.6, 3.7), refusals
//! exit non-zero with nothing on stdout and one line on stderr, and the server audits them.

mod server_support;

use anyhow::{Context, Result};
use mandate_integration::Server;
use serde_json::Value;
use server_support::{attest, block_on};

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    k.sort();
    k
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
}

fn refused(server: &Server, args: &[&str], needle: &str) -> Result<()> {
    let out = server.cli(args)?;
    assert_ne!(out.code, 0, "{args:?} must fail");
    assert!(
        out.stdout.is_empty(),
        "{args:?} printed on stdout: {}",
        out.stdout
    );
    let err = out.stderr.trim();
    assert_eq!(
        err.lines().count(),
        1,
        "{args:?}: one line on stderr, got {err:?}"
    );
    assert!(
        err.to_lowercase().contains(needle),
        "{args:?}: {err:?} lacks {needle:?}"
    );
    assert!(!err.contains("panicked"));
    Ok(())
}

#[test]
fn tokens_bundle_health_round_trip() -> Result<()> {
    let server = Server::start()?;
    let token = server.cli_ok(&["token", "generate"])?;
    assert!(
        is_hex(&token, 32),
        "text mode prints only the token: {token:?}"
    );
    let json = server.cli_json(&[
        "token",
        "generate",
        "--ttl",
        "90s",
        "--agent-id",
        "spiffe://example.org/mandate/agent/node-1",
    ])?;
    assert!(is_hex(json["token"].as_str().context("token")?, 32));
    assert_eq!(
        json["agent_id"],
        "spiffe://example.org/mandate/agent/node-1"
    );
    assert!(json["expires_at"].as_i64().context("unix seconds")? > 1_700_000_000);
    let pem = server.cli_ok(&["bundle", "show"])?;
    assert!(
        pem.starts_with("-----BEGIN CERTIFICATE-----")
            && pem.ends_with("-----END CERTIFICATE-----")
    );
    let bundle = server.cli_json(&["bundle", "show"])?;
    assert_eq!(bundle["trust_domain"], "example.org");
    assert!(bundle["jwks"]["keys"][0]["kid"].is_string());
    assert_eq!(server.cli_ok(&["healthcheck"])?, "ok");
    assert_eq!(
        server.cli_json(&["healthcheck"])?["trust_domain"],
        "example.org"
    );
    Ok(())
}

#[test]
fn entries_round_trip() -> Result<()> {
    let server = Server::start()?;
    let id = server.cli_ok(&[
        "entry",
        "create",
        "--spiffe-id",
        "spiffe://example.org/wl",
        "--parent-id",
        "spiffe://example.org/agent/a",
        "--selector",
        "unix:uid:1001",
        "--selector",
        "unix:path:/usr/bin/python3",
        "--x509-ttl",
        "5m",
        "--jwt-ttl",
        "2m",
        "--dns-name",
        "wl.example.org",
        "--hint",
        "main",
    ])?;
    assert!(
        !id.is_empty() && !id.contains(char::is_whitespace),
        "only the ID: {id:?}"
    );
    let shown = server.cli_json(&["entry", "show", &id])?;
    assert_eq!(
        keys(&shown),
        [
            "created_at",
            "dns_names",
            "hint",
            "id",
            "jwt_ttl_s",
            "parent_id",
            "revision",
            "selectors",
            "spiffe_id",
            "x509_ttl_s"
        ]
    );
    assert_eq!(shown["x509_ttl_s"], 300);
    assert_eq!(shown["jwt_ttl_s"], 120);
    assert_eq!(shown["selectors"][1], "unix:path:/usr/bin/python3");
    let text = server.cli_ok(&["entry", "show", &id])?;
    assert!(
        text.contains("spiffe://example.org/wl") && text.contains("created_at: 20"),
        "{text}"
    );
    let list = server.cli_json(&["entry", "list"])?;
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(server.cli_ok(&["entry", "delete", &id])?, id);
    assert_eq!(server.cli_json(&["entry", "list"])?, Value::Array(vec![]));
    refused(&server, &["entry", "show", &id], "not found")?;
    let base = [
        "entry",
        "create",
        "--spiffe-id",
        "spiffe://example.org/wl",
        "--parent-id",
        "spiffe://example.org/a",
    ];
    refused(
        &server,
        &[&base[..], &["--selector", "k8s:ns:x"]].concat(),
        "selector",
    )?;
    refused(
        &server,
        &[&base[..], &["--selector", "unix:uid:abc"]].concat(),
        "uid",
    )?;
    let other_td = [
        "entry",
        "create",
        "--spiffe-id",
        "spiffe://other.org/wl",
        "--parent-id",
        "spiffe://example.org/a",
        "--selector",
        "unix:uid:1",
    ];
    refused(&server, &other_td, "trust domain")?;
    refused(
        &server,
        &[&base[..], &["--selector", "unix:uid:1", "--task", "nope"]].concat(),
        "not found",
    )?;
    refused(
        &server,
        &[
            &base[..],
            &["--selector", "unix:uid:1", "--x509-ttl", "soon"],
        ]
        .concat(),
        "x509-ttl",
    )?;
    refused(&server, &["task", "close", "nope"], "")?;
    // The server's refusals are in the audit log, with the caller and the reason.
    let audit = server.cli_json(&["audit", "list"])?;
    let denials: Vec<&Value> = audit
        .as_array()
        .context("audit list is an array")?
        .iter()
        .filter(|r| r["kind"] == "admin.deny")
        .collect();
    let details: Vec<&str> = denials
        .iter()
        .filter_map(|r| r["detail"].as_str())
        .collect();
    assert!(
        details
            .iter()
            .any(|d| d.starts_with("entry.create refused: InvalidArgument")
                && d.contains("trust domain")),
        "{details:?}"
    );
    assert!(
        details
            .iter()
            .any(|d| d.starts_with("task.close refused: ")),
        "{details:?}"
    );
    assert!(
        denials
            .iter()
            .all(|r| r["actor"].as_str().is_some_and(|a| a.starts_with("uid:"))),
        "{denials:?}"
    );
    assert_eq!(server.cli_json(&["audit", "verify"])?["ok"], true);
    Ok(())
}

#[test]
fn tasks_round_trip() -> Result<()> {
    let server = Server::start()?;
    let id = server.cli_ok(&[
        "task",
        "open",
        "--principal",
        "user:alice@example.org",
        "--purpose",
        "draft po 4711",
        "--action",
        "po.draft",
        "--action",
        "po.read",
        "--deadline",
        "1h",
        "--value-limit",
        "500.00:EUR",
        "--require-approval",
    ])?;
    assert!(!id.contains(char::is_whitespace), "only the ID: {id:?}");
    let t = server.cli_json(&["task", "show", &id])?;
    for k in [
        "id",
        "principal",
        "purpose",
        "actions",
        "value_limit",
        "deadline",
        "state",
        "max_depth",
    ] {
        assert!(t.get(k).is_some(), "task JSON lacks {k}: {t}");
    }
    assert!(
        t.get("approval").is_none(),
        "absent optional fields are omitted"
    );
    assert_eq!(t["state"], "pending");
    assert_eq!(t["value_limit"]["amount_minor"], 50000);
    assert_eq!(t["value_limit"]["currency"], "EUR");
    assert!(t["deadline"].as_i64().context("unix seconds")? > 1_700_000_000);
    assert_eq!(
        server.cli_ok(&["task", "approve", &id, "--approver", "bob"])?,
        id
    );
    let t = server.cli_json(&["task", "show", &id])?;
    assert_eq!(t["state"], "open");
    assert_eq!(t["approval"]["approver"], "bob");
    assert!(t["approval"]["approved_at"].is_i64());
    let text = server.cli_ok(&["task", "show", &id])?;
    assert!(
        text.contains("state: open") && text.contains("deadline: 20"),
        "{text}"
    );
    let closed = server.cli_json(&["task", "close", &id, "--reason", "done"])?;
    assert_eq!(closed["state"], "closed");
    assert_eq!(
        server.cli_json(&["task", "list"])?.as_array().map(Vec::len),
        Some(1)
    );
    refused(&server, &["task", "close", &id], "closed")?;
    refused(
        &server,
        &["task", "approve", &id, "--approver", "x"],
        "closed",
    )?;
    let open = ["task", "open", "--purpose", "p", "--action", "a"];
    refused(
        &server,
        &[&open[..], &["--principal", "alice"]].concat(),
        "principal",
    )?;
    refused(
        &server,
        &[
            &open[..],
            &["--principal", "user:a", "--value-limit", "1.234:EUR"],
        ]
        .concat(),
        "value-limit",
    )?;
    refused(
        &server,
        &[&open[..], &["--principal", "user:a", "--id", &id]].concat(),
        "already exists",
    )?;
    refused(&server, &["task", "show", "missing"], "not found")?;
    Ok(())
}

#[test]
fn agents_and_audit_round_trip() -> Result<()> {
    let server = Server::start()?;
    let agent = block_on(attest(&server, None))?;
    let agents = server.cli_json(&["agent", "list"])?;
    assert_eq!(
        keys(&agents[0]),
        ["attested_at", "banned", "expires_at", "serial", "spiffe_id"]
    );
    assert_eq!(agents[0]["spiffe_id"], agent.id.as_str());
    assert_eq!(agents[0]["banned"], false);
    assert!(server.cli_ok(&["agent", "list"])?.contains(&agent.id));
    assert_eq!(server.cli_ok(&["agent", "evict", &agent.id])?, agent.id);
    assert_eq!(server.cli_json(&["agent", "list"])?[0]["banned"], true);
    refused(
        &server,
        &["agent", "evict", "spiffe://example.org/nobody"],
        "not found",
    )?;
    refused(&server, &["agent", "evict", "not-an-id"], "invalid")?;

    let task = server.cli_ok(&[
        "task",
        "open",
        "--principal",
        "app:erp",
        "--purpose",
        "p",
        "--action",
        "a",
    ])?;
    let records = server.cli_json(&["audit", "list"])?;
    let records = records.as_array().context("array")?;
    let kinds: Vec<&str> = records.iter().filter_map(|r| r["kind"].as_str()).collect();
    // The two refused evictions are audited too.
    assert_eq!(
        kinds,
        [
            "token.create",
            "agent.attest",
            "agent.evict",
            "admin.deny",
            "admin.deny",
            "task.open"
        ]
    );
    assert!(
        records[3]["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("agent.evict refused: NotFound")),
        "{}",
        records[3]
    );
    let open = &records[5];
    for k in [
        "seq",
        "time",
        "kind",
        "actor",
        "task_id",
        "detail",
        "hash",
        "prev_hash",
    ] {
        assert!(open.get(k).is_some(), "audit JSON lacks {k}: {open}");
    }
    assert!(
        open["actor"].as_str().unwrap_or("").starts_with("uid:"),
        "peer credentials: {open}"
    );
    assert_eq!(open["prev_hash"], records[4]["hash"]);
    let only = server.cli_json(&["audit", "list", "--task", &task])?;
    assert_eq!(only.as_array().map(Vec::len), Some(1));
    assert!(server.cli_ok(&["audit", "list"])?.contains("task.open"));
    assert_eq!(
        server.cli_ok(&["audit", "verify"])?,
        "audit log ok: 6 records"
    );
    assert_eq!(server.cli_json(&["audit", "verify"])?["ok"], true);
    Ok(())
}
