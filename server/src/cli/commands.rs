//! The admin commands: build the request, call the admin API, print the reply. A refusal
//! prints nothing on stdout and returns one line for stderr.

use std::process::ExitCode;
use std::time::SystemTime;

use mandate_core::task::ValueLimit;
use mandate_core::time::unix_seconds;
use mandate_proto::admin::{self as pb};
use mandate_proto::types;
use serde_json::{Value, json};

use super::Target;
use super::args::{
    AgentCommand, AuditCommand, BundleCommand, Command, EntryCommand, OutputFormat, TaskCommand,
    TokenCommand,
};
use super::output::{
    agent_json, agent_text, audit_json, audit_text, entry_json, entry_text, task_json, task_text,
    task_tree_text,
};
use super::print::ListPrinter;

/// What a command prints on success: JSON for `--output json`, text otherwise; a list has
/// printed itself as it streamed in.
enum Printed {
    One { json: Value, text: String },
    Streamed,
}

fn both(json: Value, text: impl Into<String>) -> Printed {
    Printed::One {
        json,
        text: text.into(),
    }
}

fn status(e: tonic::Status) -> String {
    let message = e.message().lines().next().unwrap_or("").to_owned();
    if message.is_empty() {
        format!("request failed: {:?}", e.code())
    } else {
        message
    }
}

fn seconds(flag: &str, text: &str) -> Result<u64, String> {
    super::args::duration_flag(flag, text).map(|d| d.as_secs().max(1))
}

/// Runs one admin command.
///
/// # Errors
/// One line describing what was refused or failed.
pub(super) async fn execute(
    command: Command,
    target: &Target,
    output: OutputFormat,
) -> Result<ExitCode, String> {
    let Printed::One { json, text } = dispatch(command, target, output).await? else {
        return Ok(ExitCode::SUCCESS);
    };
    match output {
        OutputFormat::Json => {
            let rendered = serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?;
            println!("{rendered}");
        }
        OutputFormat::Text if text.is_empty() => {}
        OutputFormat::Text => println!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

async fn dispatch(
    command: Command,
    target: &Target,
    output: OutputFormat,
) -> Result<Printed, String> {
    // Check arguments before connecting, so a bad flag is reported as such.
    match command {
        Command::Run(_) => Err("run is not an admin command".into()),
        Command::Token(TokenCommand::Generate { agent_id, ttl }) => {
            let ttl_seconds = seconds("--ttl", &ttl)?;
            let mut client = target.connect().await?;
            let req = pb::CreateJoinTokenRequest {
                agent_id: agent_id.unwrap_or_default(),
                ttl_seconds,
            };
            let t = client
                .create_join_token(req)
                .await
                .map_err(status)?
                .into_inner();
            let json =
                json!({"token": t.token, "agent_id": t.agent_id, "expires_at": t.expires_at_unix});
            Ok(both(json, t.token))
        }
        Command::Bundle(BundleCommand::Show) => {
            let mut client = target.connect().await?;
            let b = client
                .show_bundle(pb::ShowBundleRequest {})
                .await
                .map_err(status)?
                .into_inner();
            let pems: Vec<String> = b
                .x509_authorities
                .iter()
                .map(|der| mandate_core::x509::pem_encode_certs(std::slice::from_ref(der)))
                .collect();
            let jwks: Value = serde_json::from_slice(&b.jwks).unwrap_or(Value::Null);
            let json = json!({
                "trust_domain": b.trust_domain,
                "x509_authorities": pems,
                "jwks": jwks,
                "sequence": b.sequence,
            });
            let text = mandate_core::x509::pem_encode_certs(&b.x509_authorities);
            Ok(both(json, text.trim_end()))
        }
        Command::Entry(cmd) => entry(cmd, target, output).await,
        Command::Task(cmd) => task(cmd, target, output).await,
        Command::Agent(cmd) => agent(cmd, target, output).await,
        Command::Audit(cmd) => audit(cmd, target, output).await,
        Command::Healthcheck => {
            let mut client = target.connect().await?;
            let h = client
                .health(pb::HealthRequest {})
                .await
                .map_err(status)?
                .into_inner();
            let json = json!({"status": "ok", "trust_domain": h.trust_domain, "entries": h.entries, "revision": h.revision});
            Ok(both(json, "ok"))
        }
    }
}

async fn entry(
    cmd: EntryCommand,
    target: &Target,
    output: OutputFormat,
) -> Result<Printed, String> {
    match cmd {
        EntryCommand::Create(a) => {
            let x509 = a
                .x509_ttl
                .as_deref()
                .map(|t| seconds("--x509-ttl", t))
                .transpose()?;
            let jwt = a
                .jwt_ttl
                .as_deref()
                .map(|t| seconds("--jwt-ttl", t))
                .transpose()?;
            let req = pb::CreateEntryRequest {
                spiffe_id: a.spiffe_id,
                parent_id: a.parent_id,
                selectors: a.selectors,
                x509_ttl_seconds: x509.unwrap_or(0),
                jwt_ttl_seconds: jwt.unwrap_or(0),
                task_id: a.task.unwrap_or_default(),
                dns_names: a.dns_names,
                hint: a.hint.unwrap_or_default(),
                delegate_from: a.delegate_from,
            };
            let mut client = target.connect().await?;
            let e = client.create_entry(req).await.map_err(status)?.into_inner();
            Ok(both(entry_json(&e), e.id.clone()))
        }
        EntryCommand::List => {
            let mut client = target.connect().await?;
            let mut stream = client
                .list_entries(pb::ListEntriesRequest {})
                .await
                .map_err(status)?
                .into_inner();
            let mut printer = ListPrinter::new(output, "\n\n");
            while let Some(chunk) = stream.message().await.map_err(status)? {
                for e in &chunk.entries {
                    printer.item(&entry_json(e), &entry_text(e))?;
                }
            }
            printer.finish()?;
            Ok(Printed::Streamed)
        }
        EntryCommand::Show { id } => {
            let mut client = target.connect().await?;
            let e = client
                .get_entry(pb::GetEntryRequest { id })
                .await
                .map_err(status)?
                .into_inner();
            Ok(both(entry_json(&e), entry_text(&e)))
        }
        EntryCommand::Delete { id } => {
            let mut client = target.connect().await?;
            let r = client
                .delete_entry(pb::DeleteEntryRequest { id })
                .await
                .map_err(status)?
                .into_inner();
            Ok(both(json!({"id": r.id}), r.id))
        }
    }
}

async fn task(cmd: TaskCommand, target: &Target, output: OutputFormat) -> Result<Printed, String> {
    let show = |t: types::Task| both(task_json(&t), t.id.clone());
    match cmd {
        TaskCommand::Open(a) => {
            let deadline = super::args::duration_flag("--deadline", &a.deadline)?;
            let value_limit = a
                .value_limit
                .as_deref()
                .map(|v| {
                    v.parse::<ValueLimit>()
                        .map(|v| types::ValueLimit {
                            amount_minor: v.amount_minor,
                            currency: v.currency.to_string(),
                        })
                        .map_err(|e| format!("invalid --value-limit: {e}"))
                })
                .transpose()?;
            let req = pb::OpenTaskRequest {
                id: a.id.unwrap_or_default(),
                principal: a.principal,
                purpose: a.purpose,
                actions: a.actions,
                value_limit,
                deadline_unix: unix_seconds(SystemTime::now() + deadline),
                max_depth: a.max_depth,
                require_approval: a.require_approval,
            };
            let mut client = target.connect().await?;
            Ok(show(
                client.open_task(req).await.map_err(status)?.into_inner(),
            ))
        }
        TaskCommand::Approve { id, approver } => {
            let mut client = target.connect().await?;
            let req = pb::ApproveTaskRequest { id, approver };
            Ok(show(
                client.approve_task(req).await.map_err(status)?.into_inner(),
            ))
        }
        TaskCommand::Close {
            id: _,
            principal: Some(principal),
            reason,
        } => {
            let mut client = target.connect().await?;
            let req = pb::CloseTasksOfPrincipalRequest {
                principal,
                reason: reason.unwrap_or_default(),
            };
            let closed = client
                .close_tasks_of_principal(req)
                .await
                .map_err(status)?
                .into_inner()
                .tasks;
            let ids: Vec<&str> = closed.iter().map(|t| t.id.as_str()).collect();
            Ok(both(
                Value::Array(closed.iter().map(task_json).collect()),
                ids.join("\n"),
            ))
        }
        TaskCommand::Close {
            id,
            principal: None,
            reason,
        } => {
            let mut client = target.connect().await?;
            let req = pb::CloseTaskRequest {
                id: id.unwrap_or_default(),
                reason: reason.unwrap_or_default(),
            };
            Ok(show(
                client.close_task(req).await.map_err(status)?.into_inner(),
            ))
        }
        TaskCommand::Tree { id } => {
            let mut client = target.connect().await?;
            let tasks = client
                .task_tree(pb::TaskTreeRequest { id })
                .await
                .map_err(status)?
                .into_inner()
                .tasks;
            Ok(both(
                Value::Array(tasks.iter().map(task_json).collect()),
                task_tree_text(&tasks),
            ))
        }
        TaskCommand::List { principal, state } => {
            let mut client = target.connect().await?;
            let mut stream = client
                .list_tasks(pb::ListTasksRequest {
                    principal: principal.unwrap_or_default(),
                    state: state.unwrap_or_default(),
                })
                .await
                .map_err(status)?
                .into_inner();
            let mut printer = ListPrinter::new(output, "\n\n");
            while let Some(chunk) = stream.message().await.map_err(status)? {
                for t in &chunk.tasks {
                    printer.item(&task_json(t), &task_text(t))?;
                }
            }
            printer.finish()?;
            Ok(Printed::Streamed)
        }
        TaskCommand::Show { id } => {
            let mut client = target.connect().await?;
            let t = client
                .get_task(pb::GetTaskRequest { id })
                .await
                .map_err(status)?
                .into_inner();
            Ok(both(task_json(&t), task_text(&t)))
        }
    }
}

async fn agent(
    cmd: AgentCommand,
    target: &Target,
    output: OutputFormat,
) -> Result<Printed, String> {
    let mut client = target.connect().await?;
    match cmd {
        AgentCommand::List => {
            let mut stream = client
                .list_agents(pb::ListAgentsRequest {})
                .await
                .map_err(status)?
                .into_inner();
            let mut printer = ListPrinter::new(output, "\n");
            while let Some(chunk) = stream.message().await.map_err(status)? {
                for a in &chunk.agents {
                    printer.item(&agent_json(a), &agent_text(a))?;
                }
            }
            printer.finish()?;
            Ok(Printed::Streamed)
        }
        AgentCommand::Evict { id } => {
            let a = client
                .evict_agent(pb::EvictAgentRequest { spiffe_id: id })
                .await
                .map_err(status)?
                .into_inner();
            Ok(both(agent_json(&a), a.spiffe_id.clone()))
        }
    }
}

async fn audit(
    cmd: AuditCommand,
    target: &Target,
    output: OutputFormat,
) -> Result<Printed, String> {
    let mut client = target.connect().await?;
    match cmd {
        AuditCommand::List { task, since, limit } => {
            let req = pb::ListAuditRequest {
                task_id: task.unwrap_or_default(),
                since_seq: since.unwrap_or(0),
                limit: limit.unwrap_or(0),
            };
            let mut stream = client.list_audit(req).await.map_err(status)?.into_inner();
            let mut printer = ListPrinter::new(output, "\n");
            while let Some(chunk) = stream.message().await.map_err(status)? {
                for r in &chunk.records {
                    printer.item(&audit_json(r), &audit_text(r))?;
                }
            }
            printer.finish()?;
            Ok(Printed::Streamed)
        }
        AuditCommand::Verify => {
            let r = client
                .verify_audit(pb::VerifyAuditRequest {})
                .await
                .map_err(status)?
                .into_inner();
            if !r.ok {
                return Err(format!("audit verification failed: {}", r.problem));
            }
            let json = json!({"ok": true, "records": r.records});
            Ok(both(json, format!("audit log ok: {} records", r.records)))
        }
    }
}
