//! The example task broker (`examples/src/bin/task-broker.rs`, DESIGN 3.9) on the real
//! binaries: a workload with its own SVID that opens tasks for users over the remote admin API,
//! registers the AI agent's entry under its allowed paths, and is refused (403, nothing left
//! open) outside them.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod admin_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use admin_support::*;
use anyhow::{Context, Result};
use mandate_integration::{Process, bin, wait_for};
use serde_json::{Value, json};

/// One HTTP/1.1 exchange with `Connection: close`: the status and the JSON body.
fn http(address: &str, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Value)> {
    let mut tcp = TcpStream::connect(address)?;
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        tcp,
        "{method} {path} HTTP/1.1\r\nHost: broker\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = String::new();
    tcp.read_to_string(&mut raw)?;
    let status = raw
        .split(' ')
        .nth(1)
        .context("a status line")?
        .parse::<u16>()?;
    let (_, payload) = raw.split_once("\r\n\r\n").context("a body")?;
    Ok((status, serde_json::from_str(payload)?))
}

/// Starts the broker as the `broker` workload and returns it with its listen address.
fn start_broker(setup: &RemoteAdmin) -> Result<(Process, String)> {
    let log = setup.server.dir.path().join("task-broker.log");
    let mut command = Command::new(bin("task-broker"));
    command
        .args([
            "--listen",
            "127.0.0.1:0",
            "--server-address",
            &setup.address,
        ])
        .args([
            "--endpoint",
            &setup.agent.endpoint(),
            "--spiffe-id",
            &id(BROKER),
        ]);
    let process = Process::spawn(command, &log)?;
    let address = wait_for("the task broker to listen", Duration::from_secs(30), || {
        process.log().lines().find_map(|line| {
            line.strip_prefix("task-broker listening on ")
                .map(str::to_owned)
        })
    })
    .with_context(|| process.log())?;
    Ok((process, address))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_example_broker_opens_tasks_for_users_within_its_role() -> Result<()> {
    let setup = RemoteAdmin::start("broker-example").await?;
    let (_broker, address) = start_broker(&setup)?;
    let parent = setup.agent.spiffe_id.clone();

    // "Open a task for alice to draft PO 4711", with the AI agent that will do it.
    let order = json!({
        "principal": "user:alice@example.org",
        "purpose": "draft PO 4711",
        "actions": ["po.draft", "po.read"],
        "deadline": "10m",
        "value_limit": "500.00:EUR",
        "agent": {"spiffe_id": id("ai/po-agent"), "parent_id": parent, "selectors": ["unix:uid:4242"]},
    });
    let (status, body) = http(&address, "POST", "/tasks", Some(&order))?;
    assert_eq!(status, 201, "{body}");
    let task = body["task_id"].as_str().unwrap().to_owned();
    assert_eq!(body["state"], "open");
    let entry = body["entry_id"].as_str().unwrap().to_owned();

    // The server holds both, made by the broker's SPIFFE ID.
    let shown = setup.server.cli_json(&["entry", "show", &entry])?;
    assert_eq!(shown["task_id"], task.as_str());
    assert_eq!(shown["spiffe_id"], id("ai/po-agent").as_str());
    let audit = setup.audit()?;
    let made = |kind: &str, key: &str, value: &str| {
        let record = audit
            .iter()
            .find(|r| r["kind"] == kind && r[key] == value)
            .unwrap();
        assert_eq!(record["actor"], id(BROKER).as_str(), "{record}");
    };
    made("task.open", "task_id", &task);
    made("entry.create", "spiffe_id", &id("ai/po-agent"));
    let (status, body) = http(&address, "GET", &format!("/tasks/{task}"), None)?;
    assert_eq!(
        (status, body["principal"].clone()),
        (200, json!("user:alice@example.org"))
    );

    // An agent outside the broker's paths: 403, and the task it opened for it is closed again.
    let mut outside = order.clone();
    outside["agent"]["spiffe_id"] = json!(id("finance/agent"));
    let (status, body) = http(&address, "POST", "/tasks", Some(&outside))?;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("allowed_paths"),
        "{body}"
    );
    let tasks = setup.server.cli_json(&["task", "list"])?;
    let open: Vec<&Value> = tasks
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["state"] == "open")
        .collect();
    assert_eq!(open.len(), 1, "only the first task is open: {tasks}");

    // A task the broker did not open is not its to show or close.
    let foreign = setup.server.cli_ok(&[
        "task",
        "open",
        "--principal",
        "user:bob",
        "--purpose",
        "p",
        "--action",
        "a",
    ])?;
    let (status, _) = http(&address, "DELETE", &format!("/tasks/{foreign}"), None)?;
    assert_eq!(status, 403);
    let (status, _) = http(&address, "GET", &format!("/tasks/{foreign}"), None)?;
    assert_eq!(status, 403);

    // Its own it closes.
    let (status, body) = http(&address, "DELETE", &format!("/tasks/{task}"), None)?;
    assert_eq!((status, body["state"].clone()), (200, json!("closed")));
    let (status, _) = http(&address, "POST", "/tasks", Some(&json!({"principal": 1})))?;
    assert_eq!(status, 400);
    Ok(())
}
