//! DESIGN 3.7 "Input rules" on the real binaries, table-driven: malformed SPIFFE IDs (an
//! uppercase trust domain among them, issue 11 item 11), selectors, principals, value
//! limits, oversized strings, and entries bound to a closed or expired task (item 13). Each
//! refusal is one line on stderr, nothing on stdout, a non-zero exit; over gRPC the right code.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use mandate_integration::{CliOutput, Server, workload};
use mandate_proto::admin::CreateEntryRequest;
use mandate_proto::admin::admin_client::AdminClient;
use tonic::Code;

const PARENT: &str = "spiffe://example.org/mandate/agent/a";

fn refused(out: &CliOutput, needle: &str, what: &str) -> Result<()> {
    ensure!(!out.success(), "{what}: accepted: {out:?}");
    ensure!(
        out.stdout.trim().is_empty(),
        "{what}: stdout {:?}",
        out.stdout
    );
    ensure!(!out.stderr.contains("panicked"), "{what}: {}", out.stderr);
    ensure!(
        out.stderr.trim().lines().count() == 1,
        "{what}: not one line: {:?}",
        out.stderr
    );
    ensure!(
        out.stderr.contains(needle),
        "{what}: {:?} does not say {needle:?}",
        out.stderr
    );
    Ok(())
}

fn entry(server: &Server, spiffe_id: &str, selector: &str, extra: &[&str]) -> Result<CliOutput> {
    let mut args = vec![
        "entry",
        "create",
        "--spiffe-id",
        spiffe_id,
        "--parent-id",
        PARENT,
        "--selector",
        selector,
    ];
    args.extend_from_slice(extra);
    server.cli(&args)
}

fn task(server: &Server, changes: &[(&str, &str)]) -> Result<CliOutput> {
    let mut flags: Vec<(String, String)> = [
        ("--principal", "user:alice@example.org"),
        ("--purpose", "draft PO 4711"),
        ("--action", "po.draft"),
    ]
    .iter()
    .map(|(f, v)| ((*f).to_owned(), (*v).to_owned()))
    .collect();
    for (flag, value) in changes {
        match flags.iter_mut().find(|(f, _)| f == flag) {
            Some(slot) if *flag != "--action" => slot.1 = (*value).to_owned(),
            _ => flags.push(((*flag).to_owned(), (*value).to_owned())),
        }
    }
    let mut args = vec!["task".to_owned(), "open".to_owned()];
    for (f, v) in flags {
        // `--flag=value`, so a value such as `-5:EUR` reaches the command's own check.
        args.push(format!("{f}={v}"));
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    server.cli(&refs)
}

#[test]
fn malformed_entries_are_refused_in_one_line() -> Result<()> {
    let server = Server::start()?;
    let hex63 = "a".repeat(63);
    let sha_short = format!("unix:sha256:{hex63}");
    let sha_bad = format!("unix:sha256:{hex63}g");
    let long_id = format!("spiffe://example.org/{}", "a".repeat(2049 - 21));
    // (spiffe_id, selector, what the line says)
    let cases: &[(&str, &str, &str)] = &[
        ("spiffe://EXAMPLE.org/ai/buyer", "unix:uid:1", "lowercase"),
        ("SPIFFE://example.org/ai/buyer", "unix:uid:1", "lowercase"),
        ("spiffe://example.org/ai//buyer", "unix:uid:1", "spiffe_id"),
        ("spiffe://example.org/ai/../x", "unix:uid:1", "spiffe_id"),
        ("spiffe://example.org/ai/x?y", "unix:uid:1", "spiffe_id"),
        ("spiffe://other.org/ai/x", "unix:uid:1", "trust domain"),
        ("spiffe://example.org", "unix:uid:1", "empty path"),
        ("https://example.org/ai", "unix:uid:1", "spiffe_id"),
        (&long_id, "unix:uid:1", "2048"),
        ("spiffe://example.org/ai/x", "unix:uid:root", "number"),
        ("spiffe://example.org/ai/x", "unix:uid:-1", "number"),
        ("spiffe://example.org/ai/x", "unix:uid:4294967296", "number"),
        ("spiffe://example.org/ai/x", "unix:gid:1.5", "number"),
        ("spiffe://example.org/ai/x", &sha_short, "64 hex"),
        ("spiffe://example.org/ai/x", &sha_bad, "64 hex"),
        ("spiffe://example.org/ai/x", "unix:path:bin/sh", "absolute"),
        ("spiffe://example.org/ai/x", "k8s:ns:default", "only unix"),
        (
            "spiffe://example.org/ai/x",
            "unix:pid:1",
            "unknown unix selector",
        ),
        ("spiffe://example.org/ai/x", "unix:uid", "not of the form"),
    ];
    for (id, selector, needle) in cases {
        let out = entry(&server, id, selector, &[])?;
        refused(&out, needle, &format!("{id} {selector}"))?;
    }
    let big_hint = "h".repeat(257);
    refused(
        &entry(
            &server,
            "spiffe://example.org/ai/x",
            "unix:uid:1",
            &["--hint", &big_hint],
        )?,
        "hint",
        "hint",
    )?;
    refused(
        &entry(
            &server,
            "spiffe://example.org/ai/x",
            "unix:uid:1",
            &["--dns-name", "a_b"],
        )?,
        "DNS",
        "dns",
    )?;
    // Over gRPC the uppercase trust domain is InvalidArgument too.
    server_support_block_on(async {
        let status = AdminClient::new(workload::channel(&server.admin_socket).await?)
            .create_entry(CreateEntryRequest {
                spiffe_id: "spiffe://EXAMPLE.org/ai/buyer".into(),
                parent_id: PARENT.into(),
                selectors: vec!["unix:uid:1".into()],
                ..Default::default()
            })
            .await
            .err()
            .context("uppercase trust domain accepted")?;
        ensure!(status.code() == Code::InvalidArgument, "{status:?}");
        Ok(())
    })?;
    ensure!(
        server
            .cli_json(&["entry", "list"])?
            .as_array()
            .map(Vec::len)
            == Some(0)
    );
    Ok(())
}

#[test]
fn malformed_tasks_are_refused_in_one_line() -> Result<()> {
    let server = Server::start()?;
    let purpose = "p".repeat(257);
    let action = "a".repeat(129);
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("--principal", "bob")], "principal"),
        (&[("--principal", "user:")], "principal"),
        (&[("--principal", "app:")], "principal"),
        (&[("--principal", "spiffe://EXAMPLE.org/x")], "principal"),
        (&[("--value-limit", "1.234:EUR")], "value-limit"),
        (&[("--value-limit", "5:eur")], "value-limit"),
        (&[("--value-limit", "-5:EUR")], "value-limit"),
        (&[("--value-limit", "5.:EUR")], "value-limit"),
        (
            &[("--value-limit", "99999999999999999999:EUR")],
            "value-limit",
        ),
        (&[("--purpose", &purpose)], "purpose"),
        (&[("--action", &action)], "action"),
        (&[("--action", "po draft")], "action"),
        (&[("--action", "po.draft")], "twice"),
        (&[("--id", "a/b")], "task ID"),
    ];
    for (changes, needle) in cases {
        refused(&task(&server, changes)?, needle, &format!("{changes:?}"))?;
    }
    let mut many: Vec<(&str, String)> = Vec::new();
    for i in 1..65 {
        many.push(("--action", format!("a{i}")));
    }
    let refs: Vec<(&str, &str)> = many.iter().map(|(f, v)| (*f, v.as_str())).collect();
    refused(&task(&server, &refs)?, "actions", "65 actions")?;
    ensure!(
        task(&server, &refs[..63])?.success(),
        "64 actions are allowed"
    );
    // Free text that lands in every SVID (approver) or the audit log (reason) is bounded.
    let pending = server.cli_ok(&[
        "task",
        "open",
        "--principal",
        "user:alice@example.org",
        "--purpose",
        "p",
        "--action",
        "po.draft",
        "--require-approval",
    ])?;
    let long_approver = "a".repeat(257);
    let out = server.cli(&["task", "approve", &pending, "--approver", &long_approver])?;
    refused(&out, "approver", "257-byte approver")?;
    server.cli_ok(&["task", "approve", &pending, "--approver", &"a".repeat(256)])?;
    let long_reason = "r".repeat(1025);
    let out = server.cli(&["task", "close", &pending, "--reason", &long_reason])?;
    refused(&out, "reason", "1025-byte reason")?;
    server.cli_ok(&["task", "close", &pending, "--reason", &"r".repeat(1024)])?;
    Ok(())
}

#[test]
fn an_entry_for_an_ended_task_is_refused() -> Result<()> {
    let server = Server::start()?;
    let open = |deadline: &str| {
        server.cli_ok(&[
            "task",
            "open",
            "--principal",
            "user:alice@example.org",
            "--purpose",
            "p",
            "--action",
            "po.draft",
            "--deadline",
            deadline,
        ])
    };
    let closed = open("1h")?;
    server.cli_ok(&["task", "close", &closed])?;
    let out = entry(
        &server,
        "spiffe://example.org/ai/x",
        "unix:uid:1",
        &["--task", &closed],
    )?;
    refused(&out, "closed", "closed task")?;
    let expiring = open("2s")?;
    let start = Instant::now();
    loop {
        let shown = server.cli_json(&["task", "show", &expiring])?;
        if shown["state"] == "expired" {
            break;
        }
        ensure!(
            start.elapsed() < Duration::from_secs(30),
            "never expired: {shown}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = entry(
        &server,
        "spiffe://example.org/ai/x",
        "unix:uid:1",
        &["--task", &expiring],
    )?;
    refused(&out, "expired", "expired task")?;
    server_support_block_on(async {
        let status = AdminClient::new(workload::channel(&server.admin_socket).await?)
            .create_entry(CreateEntryRequest {
                spiffe_id: "spiffe://example.org/ai/x".into(),
                parent_id: PARENT.into(),
                selectors: vec!["unix:uid:1".into()],
                task_id: closed.clone(),
                ..Default::default()
            })
            .await
            .err()
            .context("closed task accepted")?;
        ensure!(status.code() == Code::FailedPrecondition, "{status:?}");
        Ok(())
    })?;
    // An open task still takes entries.
    let live = open("1h")?;
    server.create_entry(
        "spiffe://example.org/ai/x",
        PARENT,
        &["--selector", "unix:uid:1", "--task", &live],
    )?;
    Ok(())
}

fn server_support_block_on<T>(future: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}
