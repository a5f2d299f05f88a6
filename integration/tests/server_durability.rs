//! Durability of the server's store: kill -9 straight after acknowledged admin calls, plain
//! restarts, and `audit verify` catching an audit record edited or deleted offline.

mod server_support;

use anyhow::{Context, Result};
use mandate_integration::Server;
use serde_json::Value;
use server_support::{attest, block_on};

fn ids(v: &Value) -> Vec<String> {
    let mut ids: Vec<String> = v
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

#[test]
fn kill_9_after_each_acknowledged_call_loses_nothing() -> Result<()> {
    let mut server = Server::start()?;
    let mut entries = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..3 {
        let spiffe = format!("spiffe://example.org/wl/{i}");
        entries.push(server.create_entry(
            &spiffe,
            "spiffe://example.org/agent/a",
            &["--selector", "unix:uid:1001"],
        )?);
        server.kill9();
        server.restart()?;
        let task = server.cli_ok(&[
            "task",
            "open",
            "--principal",
            "user:alice@example.org",
            "--purpose",
            "p",
            "--action",
            "po.draft",
        ])?;
        server.kill9();
        server.restart()?;
        server.cli_ok(&["task", "close", &task, "--reason", "done"])?;
        server.kill9();
        server.restart()?;
        tasks.push(task);
    }
    entries.sort();
    tasks.sort();
    assert_eq!(ids(&server.cli_json(&["entry", "list"])?), entries);
    let listed = server.cli_json(&["task", "list"])?;
    assert_eq!(ids(&listed), tasks);
    assert!(
        listed
            .as_array()
            .context("array")?
            .iter()
            .all(|t| t["state"] == "closed")
    );
    let audit = server.cli_json(&["audit", "verify"])?;
    assert_eq!(audit["ok"], true);
    assert_eq!(
        audit["records"], 9,
        "3 x (entry.create, task.open, task.close)"
    );
    Ok(())
}

#[test]
fn a_restart_keeps_entries_tasks_ca_and_audit() -> Result<()> {
    let mut server = Server::start()?;
    let mut agent = block_on(attest(&server, None))?;
    let entry = server.create_entry(
        "spiffe://example.org/wl",
        &agent.id,
        &["--selector", "unix:uid:1001"],
    )?;
    let task = server.cli_ok(&[
        "task",
        "open",
        "--principal",
        "app:erp",
        "--purpose",
        "p",
        "--action",
        "a",
        "--deadline",
        "30m",
    ])?;
    let bundle_before = server.cli_ok(&["bundle", "show"])?;
    let audit_before = server.cli_json(&["audit", "list"])?;
    assert_eq!(server.stop()?, Some(0), "SIGTERM exits cleanly");
    server.restart()?;
    assert_eq!(
        server.cli_ok(&["bundle", "show"])?,
        bundle_before,
        "the CA survives a restart"
    );
    assert_eq!(
        ids(&server.cli_json(&["entry", "list"])?),
        vec![entry.clone()]
    );
    assert_eq!(server.cli_json(&["task", "show", &task])?["state"], "open");
    let audit_after = server.cli_json(&["audit", "list"])?;
    assert_eq!(audit_after, audit_before);
    assert_eq!(server.cli_json(&["audit", "verify"])?["ok"], true);
    // The agent's SVID from before the restart still works: the same CA and agent record.
    block_on(async {
        agent.reconnect(&server).await?;
        let (code, _) = agent.sign(&entry).await?;
        assert_eq!(code, 0);
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(())
}

fn edit_audit_offline(
    server: &mut Server,
    edit: impl FnOnce(&sled::Db) -> Result<()>,
) -> Result<()> {
    server.stop()?;
    let db = sled::open(server.data_dir.join("store"))?;
    edit(&db)?;
    db.flush()?;
    drop(db);
    server.restart()
}

fn audit_key(seq: u64) -> Vec<u8> {
    let mut key = b"l:".to_vec();
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

#[test]
fn audit_verify_catches_an_edited_record() -> Result<()> {
    let mut server = Server::start()?;
    for _ in 0..3 {
        server.token(None)?;
    }
    assert_eq!(server.cli_json(&["audit", "verify"])?["ok"], true);
    edit_audit_offline(&mut server, |db| {
        let raw = db.get(audit_key(2))?.context("record 2 exists")?;
        let mut record: Value = serde_json::from_slice(&raw)?;
        record["detail"] = Value::String("nothing to see here".into());
        db.insert(audit_key(2), serde_json::to_vec(&record)?)?;
        Ok(())
    })?;
    let out = server.cli(&["audit", "verify"])?;
    assert_ne!(out.code, 0);
    assert!(out.stdout.is_empty());
    assert!(
        out.stderr.contains("record 2 was modified"),
        "{}",
        out.stderr
    );
    Ok(())
}

#[test]
fn audit_verify_catches_a_deleted_record() -> Result<()> {
    let mut server = Server::start()?;
    for _ in 0..3 {
        server.token(None)?;
    }
    edit_audit_offline(&mut server, |db| {
        db.remove(audit_key(2))?.context("record 2 exists")?;
        Ok(())
    })?;
    let out = server.cli(&["audit", "verify"])?;
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("removed"), "{}", out.stderr);
    edit_audit_offline(&mut server, |db| {
        db.remove(audit_key(3))?.context("record 3 exists")?;
        Ok(())
    })?;
    let out = server.cli(&["audit", "verify"])?;
    assert_ne!(out.code, 0, "a removed tail is caught too");
    assert!(out.stderr.contains("ends at record 1"), "{}", out.stderr);
    Ok(())
}
