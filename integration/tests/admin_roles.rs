//! The role table of the admin API over mTLS (DESIGN 3.9, docs/ARCHITECTURE.md "Admin
//! roles"): every RPC called by an operator, a task broker, an approver and an unlisted SVID of
//! the trust domain, over a real server, agent and TLS. A cell outside the role is
//! `PermissionDenied` with an `admin.deny` record naming the caller; a cell inside is not. Also
//! the audit actors of remote calls and the unix socket working as before.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod admin_support;

use std::time::SystemTime;

use admin_support::*;
use anyhow::Result;
use mandate_proto::admin::admin_client::AdminClient;
use mandate_proto::admin::{self as pb};
use tonic::Code;
use tonic::transport::Channel;

/// Every RPC of the Admin service.
const RPCS: [&str; 18] = [
    "CreateJoinToken",
    "ShowBundle",
    "CreateEntry",
    "ListEntries",
    "GetEntry",
    "DeleteEntry",
    "OpenTask",
    "ApproveTask",
    "CloseTask",
    "ListTasks",
    "GetTask",
    "TaskTree",
    "CloseTasksOfPrincipal",
    "ListAgents",
    "EvictAgent",
    "ListAudit",
    "VerifyAudit",
    "Health",
];

/// The table of docs/ARCHITECTURE.md: may `caller` call `rpc`?
fn allowed(caller: &str, rpc: &str) -> bool {
    match caller {
        OPERATOR => true,
        BROKER => matches!(
            rpc,
            "OpenTask" | "GetTask" | "ListTasks" | "CloseTask" | "CreateEntry" | "DeleteEntry"
        ),
        APPROVER => matches!(rpc, "GetTask" | "ListTasks" | "ApproveTask"),
        _ => false,
    }
}

/// What a caller's cells act on: its own tasks and entries where its role needs them.
struct Targets {
    task: String,
    task_to_close: String,
    pending: String,
    entry: String,
    entry_to_delete: String,
    parent: String,
}

fn open_request(require_approval: bool) -> pb::OpenTaskRequest {
    let deadline = SystemTime::now() + std::time::Duration::from_secs(3600);
    pb::OpenTaskRequest {
        principal: "user:alice@example.org".into(),
        purpose: "role table".into(),
        actions: vec!["po.draft".into()],
        deadline_unix: mandate_core::time::unix_seconds(deadline),
        require_approval,
        ..pb::OpenTaskRequest::default()
    }
}

async fn open(client: &mut AdminClient<Channel>, require_approval: bool) -> Result<String> {
    Ok(client
        .open_task(open_request(require_approval))
        .await?
        .into_inner()
        .id)
}

fn entry_request(spiffe_id: String, parent: &str, task: &str) -> pb::CreateEntryRequest {
    pb::CreateEntryRequest {
        spiffe_id,
        parent_id: parent.to_owned(),
        selectors: vec!["unix:uid:4242".into()],
        task_id: task.to_owned(),
        ..pb::CreateEntryRequest::default()
    }
}

/// Calls `rpc` as the holder of `client`; the status code (`Ok` on success).
async fn call(client: &mut AdminClient<Channel>, rpc: &str, t: &Targets, n: usize) -> Code {
    let result: Result<(), tonic::Status> = match rpc {
        "CreateJoinToken" => client
            .create_join_token(pb::CreateJoinTokenRequest {
                agent_id: String::new(),
                ttl_seconds: 60,
            })
            .await
            .map(drop),
        "ShowBundle" => client.show_bundle(pb::ShowBundleRequest {}).await.map(drop),
        "CreateEntry" => {
            let spiffe_id = id(&format!("ai/table-{n}"));
            client
                .create_entry(entry_request(spiffe_id, &t.parent, &t.task))
                .await
                .map(drop)
        }
        "ListEntries" => client
            .list_entries(pb::ListEntriesRequest {})
            .await
            .map(drop),
        "GetEntry" => client
            .get_entry(pb::GetEntryRequest {
                id: t.entry.clone(),
            })
            .await
            .map(drop),
        "DeleteEntry" => client
            .delete_entry(pb::DeleteEntryRequest {
                id: t.entry_to_delete.clone(),
            })
            .await
            .map(drop),
        "OpenTask" => client.open_task(open_request(false)).await.map(drop),
        "ApproveTask" => client
            .approve_task(pb::ApproveTaskRequest {
                id: t.pending.clone(),
                approver: "carol".into(),
            })
            .await
            .map(drop),
        "CloseTask" => client
            .close_task(pb::CloseTaskRequest {
                id: t.task_to_close.clone(),
                reason: "role table".into(),
            })
            .await
            .map(drop),
        "ListTasks" => client
            .list_tasks(pb::ListTasksRequest::default())
            .await
            .map(drop),
        "GetTask" => client
            .get_task(pb::GetTaskRequest { id: t.task.clone() })
            .await
            .map(drop),
        "TaskTree" => client
            .task_tree(pb::TaskTreeRequest { id: t.task.clone() })
            .await
            .map(drop),
        "CloseTasksOfPrincipal" => client
            .close_tasks_of_principal(pb::CloseTasksOfPrincipalRequest {
                principal: "user:nobody@example.org".into(),
                reason: "role table".into(),
            })
            .await
            .map(drop),
        "ListAgents" => client.list_agents(pb::ListAgentsRequest {}).await.map(drop),
        "EvictAgent" => client
            .evict_agent(pb::EvictAgentRequest {
                spiffe_id: id("mandate/agent/nobody"),
            })
            .await
            .map(drop),
        "ListAudit" => client
            .list_audit(pb::ListAuditRequest::default())
            .await
            .map(drop),
        "VerifyAudit" => client
            .verify_audit(pb::VerifyAuditRequest {})
            .await
            .map(drop),
        "Health" => client.health(pb::HealthRequest {}).await.map(drop),
        other => panic!("no such RPC {other}"),
    };
    result.err().map_or(Code::Ok, |s| s.code())
}

/// The targets of `caller`: a broker acts on tasks and entries it made itself.
async fn targets(
    setup: &RemoteAdmin,
    caller: &str,
    ops: &mut AdminClient<Channel>,
) -> Result<Targets> {
    let parent = setup.agent.spiffe_id.clone();
    let mut own = if caller == BROKER {
        setup.client(BROKER).await?
    } else {
        ops.clone()
    };
    let task = open(&mut own, false).await?;
    let task_to_close = open(&mut own, false).await?;
    let pending = open(ops, true).await?;
    let mut make_entry = async |path: String| -> Result<String> {
        let request = entry_request(id(&path), &parent, &task);
        Ok(own.create_entry(request).await?.into_inner().id)
    };
    let entry = make_entry(format!("ai/{caller}-kept")).await?;
    let entry_to_delete = make_entry(format!("ai/{caller}-deleted")).await?;
    Ok(Targets {
        task,
        task_to_close,
        pending,
        entry,
        entry_to_delete,
        parent,
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn every_rpc_for_every_role() -> Result<()> {
    let setup = RemoteAdmin::start("roles").await?;
    let mut ops = setup.client(OPERATOR).await?;
    let mut denied = Vec::new();
    let mut n = 0;
    for caller in [OPERATOR, BROKER, APPROVER, STRANGER] {
        let t = targets(&setup, caller, &mut ops).await?;
        let mut client = setup.client(caller).await?;
        for rpc in RPCS {
            n += 1;
            let code = call(&mut client, rpc, &t, n).await;
            if allowed(caller, rpc) {
                assert_ne!(code, Code::PermissionDenied, "{caller} {rpc}");
                // The operator's EvictAgent names no agent, and TaskTree or
                // CloseTasksOfPrincipal may find nothing; every other allowed cell succeeds.
                if !matches!(rpc, "EvictAgent" | "CloseTasksOfPrincipal") {
                    assert_eq!(code, Code::Ok, "{caller} {rpc}");
                }
            } else {
                assert_eq!(code, Code::PermissionDenied, "{caller} {rpc}");
                denied.push((caller, rpc));
            }
        }
    }
    assert_eq!(
        denied.len(),
        18 - 6 + 18 - 3 + 18,
        "cells outside the roles"
    );

    // Each refusal left one admin.deny record naming the caller and the RPC.
    let audit = setup.audit()?;
    for (caller, rpc) in denied {
        let found = audit.iter().any(|r| {
            r["kind"] == "admin.deny"
                && r["actor"] == id(caller).as_str()
                && r["detail"]
                    .as_str()
                    .is_some_and(|d| d.starts_with(&format!("{rpc} refused: PermissionDenied")))
        });
        assert!(found, "no admin.deny record for {caller} {rpc}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn remote_calls_are_audited_under_the_callers_spiffe_id() -> Result<()> {
    let setup = RemoteAdmin::start("actors").await?;
    // Through the CLI, text and JSON: the broker opens a pending task, the approver approves.
    let out = setup.cli(
        BROKER,
        &[
            "task",
            "open",
            "--principal",
            "user:bob@example.org",
            "--purpose",
            "po 4711",
            "--action",
            "po.draft",
            "--require-approval",
        ],
    )?;
    assert!(out.success(), "{}", out.stderr);
    let task = out.stdout.trim().to_owned();
    let out = setup.cli(
        APPROVER,
        &[
            "task",
            "approve",
            &task,
            "--approver",
            "carol",
            "--output",
            "json",
        ],
    )?;
    assert!(out.success(), "{}", out.stderr);
    let shown: serde_json::Value = serde_json::from_str(&out.stdout)?;
    assert_eq!(shown["state"], "open");
    assert_eq!(shown["approval"]["approver"], "carol");

    let audit = setup.audit()?;
    let record = |kind: &str| {
        audit
            .iter()
            .find(|r| r["kind"] == kind && r["task_id"] == task.as_str())
            .cloned()
            .unwrap()
    };
    assert_eq!(record("task.open")["actor"], id(BROKER).as_str());
    // The approval names the calling SPIFFE ID as actor beside the approver's name.
    let approve = record("task.approve");
    assert_eq!(approve["actor"], id(APPROVER).as_str());
    assert!(
        approve["detail"].as_str().unwrap().contains("carol"),
        "{approve}"
    );

    // The unix socket works as before, with peer credentials as actor.
    let closed = setup.server.cli_ok(&["task", "close", &task])?;
    assert_eq!(closed, task);
    let audit = setup.audit()?;
    let close = audit
        .iter()
        .find(|r| r["kind"] == "task.close" && r["task_id"] == task.as_str())
        .unwrap();
    assert!(
        close["actor"].as_str().unwrap().starts_with("uid:"),
        "{close}"
    );

    // A refused CLI call: exit non-zero, one line on stderr, nothing on stdout.
    let out = setup.cli(
        APPROVER,
        &[
            "task",
            "open",
            "--principal",
            "user:x",
            "--purpose",
            "p",
            "--action",
            "a",
        ],
    )?;
    assert!(!out.success());
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("approver role may not call OpenTask"),
        "{}",
        out.stderr
    );
    Ok(())
}
