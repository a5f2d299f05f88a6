//! The real `mandate-server` on a real PostgreSQL (`[store] kind = "postgres"`): an agent
//! attests and its workload gets an SVID, a task opens and closes, the state comes back from
//! the database after a restart, `audit verify` passes, kill -9 right after acknowledged
//! writes loses none of them, and bad store settings, a second server on the same database
//! or a newer schema stop the server with one line.
//!
//! Without PostgreSQL these tests skip with a message, except under `CI=true`.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::time::Duration;

use anyhow::{Context, Result};
use mandate_integration::cluster::current_uid;
use mandate_integration::postgres::Postgres;
use mandate_integration::{Agent, Server, ServerOptions, bin, run, wait_for};
use serde_json::Value;

fn server_on(url: &str) -> Result<Server> {
    Server::start_with(ServerOptions {
        config: format!("[store]\nkind = \"postgres\"\nurl = \"{url}\"\n"),
        ..ServerOptions::default()
    })
}

fn db_of(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or_default()
}

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

fn open_task(server: &Server) -> Result<String> {
    server.cli_ok(&[
        "task",
        "open",
        "--principal",
        "user:alice@example.org",
        "--purpose",
        "postgres",
        "--action",
        "po.draft",
        "--deadline",
        "30m",
    ])
}

/// Fetches this process's X509-SVID from `agent` until it is `spiffe_id`.
fn wait_svid(agent: &Agent, spiffe_id: &str) -> Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    wait_for("the workload's X509-SVID", Duration::from_secs(30), || {
        runtime.block_on(async {
            let client = spiffe::WorkloadApiClient::connect_to(agent.endpoint())
                .await
                .ok()?;
            let svid = client.fetch_x509_svid().await.ok()?;
            (svid.spiffe_id().to_string() == spiffe_id).then_some(())
        })
    })
}

#[test]
fn a_server_on_postgres_serves_and_comes_back_from_the_database() -> Result<()> {
    let Some(pg) = Postgres::start_or_skip("server on postgres") else {
        return Ok(());
    };
    let url = pg.create_database()?;
    let mut server = server_on(&url)?;
    let agent = Agent::start(&server, "pg-node")?;
    let workload = "spiffe://example.org/wl/pg";
    let selector = format!("unix:uid:{}", current_uid());
    let entry = server.create_entry(workload, &agent.spiffe_id, &["--selector", &selector])?;
    wait_svid(&agent, workload)?;
    let task = open_task(&server)?;
    server.cli_ok(&["task", "close", &task, "--reason", "done"])?;

    // The rows are in the database, not in the data dir's sled.
    let db = db_of(&url);
    assert_eq!(pg.psql(db, "SELECT id FROM entries")?, entry);
    assert_eq!(pg.psql(db, "SELECT state FROM tasks")?, "closed");
    assert_eq!(pg.psql(db, "SELECT count(*) FROM agents")?, "1");
    assert_eq!(pg.psql(db, "SELECT used FROM join_tokens")?, "t");
    assert!(
        !server.data_dir.join("store").join("db").exists(),
        "no sled db"
    );
    // Only certificates and key file names: never a private key.
    let journal = pg.psql(db, "SELECT key_file FROM ca_slots")?;
    assert!(
        !journal.is_empty() && !journal.contains("PRIVATE KEY"),
        "{journal}"
    );

    let audit_before = server.cli_json(&["audit", "list"])?;
    assert_eq!(server.stop()?, Some(0));
    server.restart()?;
    assert_eq!(ids(&server.cli_json(&["entry", "list"])?), vec![entry]);
    assert_eq!(
        server.cli_json(&["task", "show", &task])?["state"],
        "closed"
    );
    assert_eq!(server.cli_json(&["audit", "list"])?, audit_before);
    let verify = server.cli_json(&["audit", "verify"])?;
    assert_eq!(verify["ok"], true, "{verify}");
    // The agent keeps serving across the restart and its workload still holds the SVID.
    wait_svid(&agent, workload)?;

    // The database goes away under the running server: a write is refused with one line (no
    // panic, nothing on stdout); once it is back, the server reconnects by itself.
    pg.stop("fast")?;
    let args = [
        "entry",
        "create",
        "--spiffe-id",
        "spiffe://example.org/wl/down",
    ];
    let mut refused = args.to_vec();
    refused.extend(["--parent-id", &agent.spiffe_id, "--selector", "unix:uid:1"]);
    let out = server.cli(&refused)?;
    assert!(out.code != 0 && out.stdout.is_empty(), "{out:?}");
    assert_eq!(out.stderr.trim().lines().count(), 1, "{out:?}");
    pg.restart()?;
    server.create_entry(
        "spiffe://example.org/wl/up",
        &agent.spiffe_id,
        &["--selector", "unix:uid:1"],
    )?;
    assert_eq!(
        server
            .cli_json(&["entry", "list"])?
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    assert_eq!(server.cli_json(&["audit", "verify"])?["ok"], true);
    Ok(())
}

#[test]
fn kill_9_after_each_acknowledged_call_loses_nothing_on_postgres() -> Result<()> {
    let Some(pg) = Postgres::start_or_skip("kill -9 on postgres") else {
        return Ok(());
    };
    let mut server = server_on(&pg.create_database()?)?;
    let mut entries = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..3 {
        let spiffe = format!("spiffe://example.org/wl/{i}");
        entries.push(server.create_entry(
            &spiffe,
            "spiffe://example.org/mandate/agent/a",
            &["--selector", "unix:uid:1001"],
        )?);
        server.kill9();
        server.restart()?;
        let task = open_task(&server)?;
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
    let states = listed.as_array().context("array")?;
    assert!(states.iter().all(|t| t["state"] == "closed"), "{listed}");
    let audit = server.cli_json(&["audit", "verify"])?;
    assert_eq!(audit["ok"], true, "{audit}");
    assert_eq!(
        audit["records"], 9,
        "3 x (entry.create, task.open, task.close)"
    );
    Ok(())
}

/// Runs `mandate-server run` with `config` and `envs` until it exits (it must, on its own).
fn run_with(config: &str, envs: &[(&str, &str)]) -> Result<mandate_integration::CliOutput> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("server.toml");
    std::fs::write(&path, config)?;
    let data = dir.path().join("data");
    let socket = dir.path().join("admin.sock");
    let args = [
        "run",
        "--config",
        path.to_str().context("utf-8")?,
        "--data-dir",
        data.to_str().context("utf-8")?,
        "--admin-socket",
        socket.to_str().context("utf-8")?,
        "--bind-address",
        "127.0.0.1:0",
    ];
    run(&bin("mandate-server"), &args, envs)
}

fn assert_one_line(out: &mandate_integration::CliOutput, code: i32, needle: &str) {
    assert_eq!(out.code, code, "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert_eq!(out.stderr.trim().lines().count(), 1, "{out:?}");
    assert!(out.stderr.contains(needle), "{out:?}");
}

#[test]
fn bad_store_settings_and_a_newer_schema_stop_the_server_with_one_line() -> Result<()> {
    let out = run_with("[store]\nkind = \"mysql\"\n", &[])?;
    assert_one_line(&out, 64, "mysql");
    let out = run_with("[store]\nkind = \"postgres\"\n", &[])?;
    assert_one_line(&out, 64, "invalid store.url");
    let out = run_with(
        "[store]\nkind = \"postgres\"\nurl = \"mysql://db/x\"\n",
        &[],
    )?;
    assert_one_line(&out, 64, "invalid store.url");
    let out = run_with(
        "[store]\nkind = \"postgres\"\nurl = \"postgres://127.0.0.1/x\"\n",
        &[("MANDATE_DATABASE_URL", "postgres://u@h:notaport/x")],
    )?;
    assert_one_line(&out, 64, "invalid MANDATE_DATABASE_URL");

    let Some(pg) = Postgres::start_or_skip("newer schema refused by the server") else {
        return Ok(());
    };
    // Nothing listens on a port that was just free: one line, exit 1.
    let closed = format!(
        "postgres://postgres@127.0.0.1:{}/x",
        mandate_integration::free_port()
    );
    let out = run_with(
        "[store]\nkind = \"postgres\"\n",
        &[("MANDATE_DATABASE_URL", &closed)],
    )?;
    assert_one_line(&out, 1, "cannot connect to postgres");

    let url = pg.create_database()?;
    let mut first = server_on(&url)?;
    // One server per database until several are supported: a second one is refused.
    let out = run_with(
        "[store]\nkind = \"postgres\"\n",
        &[("MANDATE_DATABASE_URL", &url)],
    )?;
    assert_one_line(&out, 1, "another mandate-server is using this database");
    // kill -9 frees the database for the next server at once.
    first.kill9();
    first.restart()?;
    drop(first);
    pg.psql(
        db_of(&url),
        "INSERT INTO mandate_schema (version) VALUES (999)",
    )?;
    // The URL from the environment alone, with kind = "postgres" in the file.
    let out = run_with(
        "[store]\nkind = \"postgres\"\n",
        &[("MANDATE_DATABASE_URL", &url)],
    )?;
    assert_one_line(&out, 1, "schema version 999 is not supported");
    Ok(())
}
