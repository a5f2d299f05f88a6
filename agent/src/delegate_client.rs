//! `api delegate` and `api undelegate` (DESIGN 3.6, 3.8): a client of the agent's
//! `Delegation` service for agents written in shell or any language. `delegate` prints only
//! the sub-task ID.

use std::time::{Duration, SystemTime};

use mandate_proto::delegation::delegation_client::DelegationClient;
use mandate_proto::delegation::{CloseSubtaskRequest, OpenSubtaskRequest, Subtask};

use crate::cli::{DelegateArgs, Output, UndelegateArgs};
use crate::client::{ClientError, channel, request};

/// `api delegate`: opens a sub-task and returns what to print (its ID in text mode).
///
/// # Errors
/// On connection failure or refusal (the server's one line naming the rule).
pub async fn delegate(args: DelegateArgs, output: Output) -> Result<String, ClientError> {
    let deadline_unix = match args.deadline {
        None => 0,
        Some(after) => unix_seconds(SystemTime::now() + after),
    };
    let message = OpenSubtaskRequest {
        delegator_id: args.delegator_id.unwrap_or_default(),
        target_id: args.target_id,
        purpose: args.purpose.unwrap_or_default(),
        actions: args.action,
        value_limit: args.value_limit.unwrap_or_default(),
        deadline_unix,
        delegator_task_id: args.delegator_task.unwrap_or_default(),
    };
    let mut client = DelegationClient::new(channel(&args.socket.socket_path).await?);
    let subtask = client.open_subtask(request(message)).await?.into_inner();
    Ok(render(&subtask, output))
}

/// `api undelegate`: closes a sub-task this workload opened.
///
/// # Errors
/// On connection failure or refusal.
pub async fn undelegate(args: UndelegateArgs, output: Output) -> Result<String, ClientError> {
    let message = CloseSubtaskRequest {
        delegator_id: args.delegator_id.unwrap_or_default(),
        task_id: args.task_id,
        reason: args.reason.unwrap_or_default(),
    };
    let mut client = DelegationClient::new(channel(&args.socket.socket_path).await?);
    let subtask = client.close_subtask(request(message)).await?.into_inner();
    Ok(render(&subtask, output))
}

fn render(subtask: &Subtask, output: Output) -> String {
    match output {
        Output::Text => subtask.task_id.clone(),
        Output::Json => serde_json::json!({
            "task_id": subtask.task_id,
            "parent_id": subtask.parent_id,
            "deadline": subtask.deadline_unix,
            "depth": subtask.depth,
        })
        .to_string(),
    }
}

fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
        .try_into()
        .unwrap_or(i64::MAX)
}
