//! Rendering of admin replies for the CLI (DESIGN 3.7): the JSON shapes, with times in unix
//! seconds and optional fields omitted, and the text forms, with times in RFC 3339.

use std::time::Duration;

use mandate_proto::admin::{Agent, AuditRecord};
use mandate_proto::types::{Entry, Task, TaskState};
use serde_json::{Map, Value, json};

/// RFC 3339 (seconds) of unix seconds.
pub(crate) fn rfc3339(unix: i64) -> String {
    // humantime panics past 9999-12-31T23:59:59Z and before the epoch; a stored time out there
    // (a task deadline from before deadlines were bounded) prints as unix seconds instead.
    const YEAR_10000: i64 = 253_402_300_800;
    if !(0..YEAR_10000).contains(&unix) {
        return format!("{unix} (unix seconds)");
    }
    let t = mandate_core::time::from_unix_seconds(unix);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn put_opt(map: &mut Map<String, Value>, key: &str, value: &str) {
    if !value.is_empty() {
        map.insert(key.to_owned(), Value::String(value.to_owned()));
    }
}

/// The name of a wire task state.
pub(crate) fn state_name(state: i32) -> &'static str {
    match TaskState::try_from(state) {
        Ok(TaskState::Pending) => "pending",
        Ok(TaskState::Open) => "open",
        Ok(TaskState::Closed) => "closed",
        Ok(TaskState::Expired) => "expired",
        _ => "unknown",
    }
}

/// An entry as JSON.
pub(crate) fn entry_json(e: &Entry) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(e.id));
    m.insert("spiffe_id".into(), json!(e.spiffe_id));
    m.insert("parent_id".into(), json!(e.parent_id));
    m.insert("selectors".into(), json!(e.selectors));
    m.insert("x509_ttl_s".into(), json!(e.x509_ttl_seconds));
    m.insert("jwt_ttl_s".into(), json!(e.jwt_ttl_seconds));
    put_opt(&mut m, "task_id", &e.task_id);
    m.insert("dns_names".into(), json!(e.dns_names));
    put_opt(&mut m, "hint", &e.hint);
    if !e.delegate_from.is_empty() {
        m.insert("delegate_from".into(), json!(e.delegate_from));
    }
    m.insert("revision".into(), json!(e.revision));
    m.insert("created_at".into(), json!(e.created_at_unix));
    Value::Object(m)
}

/// An entry as text: one `key: value` per line.
pub(crate) fn entry_text(e: &Entry) -> String {
    let mut lines = vec![
        format!("id: {}", e.id),
        format!("spiffe_id: {}", e.spiffe_id),
        format!("parent_id: {}", e.parent_id),
    ];
    lines.extend(e.selectors.iter().map(|s| format!("selector: {s}")));
    lines.push(format!(
        "x509_ttl: {}",
        humantime::format_duration(Duration::from_secs(e.x509_ttl_seconds))
    ));
    lines.push(format!(
        "jwt_ttl: {}",
        humantime::format_duration(Duration::from_secs(e.jwt_ttl_seconds))
    ));
    if !e.task_id.is_empty() {
        lines.push(format!("task_id: {}", e.task_id));
    }
    lines.extend(e.dns_names.iter().map(|d| format!("dns_name: {d}")));
    if !e.hint.is_empty() {
        lines.push(format!("hint: {}", e.hint));
    }
    lines.extend(
        e.delegate_from
            .iter()
            .map(|d| format!("delegate_from: {d}")),
    );
    lines.push(format!("created_at: {}", rfc3339(e.created_at_unix)));
    lines.join("\n")
}

/// A task as JSON.
pub(crate) fn task_json(t: &Task) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(t.id));
    m.insert("principal".into(), json!(t.principal));
    m.insert("purpose".into(), json!(t.purpose));
    m.insert("actions".into(), json!(t.actions));
    if let Some(v) = &t.value_limit {
        m.insert(
            "value_limit".into(),
            json!({"amount_minor": v.amount_minor, "currency": v.currency}),
        );
    }
    m.insert("deadline".into(), json!(t.deadline_unix));
    m.insert("state".into(), json!(state_name(t.state)));
    if let Some(a) = &t.approval {
        m.insert(
            "approval".into(),
            json!({"approver": a.approver, "approved_at": a.approved_at_unix}),
        );
    }
    m.insert("max_depth".into(), json!(t.max_depth));
    put_opt(&mut m, "parent_id", &t.parent_id);
    m.insert("depth".into(), json!(t.depth));
    m.insert("children".into(), json!(t.children));
    put_opt(&mut m, "delegator_id", &t.delegator_id);
    put_opt(&mut m, "delegate_id", &t.delegate_id);
    m.insert("created_at".into(), json!(t.created_at_unix));
    if t.ended_at_unix != 0 {
        m.insert("ended_at".into(), json!(t.ended_at_unix));
    }
    put_opt(&mut m, "close_reason", &t.close_reason);
    Value::Object(m)
}

fn value_limit_text(amount_minor: i64, currency: &str) -> String {
    format!(
        "{}.{:02}:{currency}",
        amount_minor / 100,
        amount_minor % 100
    )
}

/// A task as text.
pub(crate) fn task_text(t: &Task) -> String {
    let mut lines = vec![
        format!("id: {}", t.id),
        format!("state: {}", state_name(t.state)),
        format!("principal: {}", t.principal),
        format!("purpose: {}", t.purpose),
        format!("actions: {}", t.actions.join(", ")),
        format!("deadline: {}", rfc3339(t.deadline_unix)),
    ];
    if let Some(v) = &t.value_limit {
        lines.push(format!(
            "value_limit: {}",
            value_limit_text(v.amount_minor, &v.currency)
        ));
    }
    if let Some(a) = &t.approval {
        lines.push(format!(
            "approval: {} at {}",
            a.approver,
            rfc3339(a.approved_at_unix)
        ));
    }
    lines.push(format!("max_depth: {}", t.max_depth));
    if !t.parent_id.is_empty() {
        lines.push(format!("parent_id: {}", t.parent_id));
        lines.push(format!("depth: {}", t.depth));
        lines.push(format!("delegator_id: {}", t.delegator_id));
        lines.push(format!("delegate_id: {}", t.delegate_id));
    }
    lines.extend(t.children.iter().map(|c| format!("child: {c}")));
    if t.ended_at_unix != 0 {
        lines.push(format!("ended_at: {}", rfc3339(t.ended_at_unix)));
    }
    if !t.close_reason.is_empty() {
        lines.push(format!("close_reason: {}", t.close_reason));
    }
    lines.join("\n")
}

/// `task tree` as text: one line per task, indented by its depth below the first (the
/// root of the subtree), with its state, actions and, for a sub-task, its delegate.
pub(crate) fn task_tree_text(tasks: &[Task]) -> String {
    let top = tasks.first().map_or(0, |t| t.depth);
    tasks
        .iter()
        .map(|t| {
            let indent = "  ".repeat(t.depth.saturating_sub(top) as usize);
            let mut line = format!(
                "{indent}{} [{}] {}",
                t.id,
                state_name(t.state),
                t.actions.join(",")
            );
            if let Some(v) = &t.value_limit {
                line.push_str(&format!(
                    " {}",
                    value_limit_text(v.amount_minor, &v.currency)
                ));
            }
            if t.delegate_id.is_empty() {
                line.push_str(&format!(" for {}", t.principal));
            } else {
                line.push_str(&format!(" -> {} (by {})", t.delegate_id, t.delegator_id));
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// An agent as JSON.
pub(crate) fn agent_json(a: &Agent) -> Value {
    json!({
        "spiffe_id": a.spiffe_id,
        "attested_at": a.attested_at_unix,
        "expires_at": a.expires_at_unix,
        "banned": a.banned,
        "serial": a.serial,
    })
}

/// An agent as one text line.
pub(crate) fn agent_text(a: &Agent) -> String {
    format!(
        "{} attested {} expires {}{}",
        a.spiffe_id,
        rfc3339(a.attested_at_unix),
        rfc3339(a.expires_at_unix),
        if a.banned { " banned" } else { "" }
    )
}

/// An audit record as JSON.
pub(crate) fn audit_json(r: &AuditRecord) -> Value {
    let mut m = Map::new();
    m.insert("seq".into(), json!(r.seq));
    m.insert("time".into(), json!(r.time_unix));
    m.insert("kind".into(), json!(r.kind));
    m.insert("actor".into(), json!(r.actor));
    put_opt(&mut m, "task_id", &r.task_id);
    put_opt(&mut m, "spiffe_id", &r.spiffe_id);
    put_opt(&mut m, "serial", &r.serial);
    m.insert("detail".into(), json!(r.detail));
    m.insert("hash".into(), json!(r.hash));
    m.insert("prev_hash".into(), json!(r.prev_hash));
    Value::Object(m)
}

/// An audit record as one text line.
pub(crate) fn audit_text(r: &AuditRecord) -> String {
    let mut line = format!(
        "{} {} {} actor={}",
        r.seq,
        rfc3339(r.time_unix),
        r.kind,
        r.actor
    );
    for (k, v) in [
        ("task", &r.task_id),
        ("spiffe_id", &r.spiffe_id),
        ("serial", &r.serial),
    ] {
        if !v.is_empty() {
            line.push_str(&format!(" {k}={v}"));
        }
    }
    if !r.detail.is_empty() {
        line.push_str(&format!(" detail={:?}", r.detail));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use mandate_proto::types::ValueLimit;

    #[test]
    fn task_json_omits_absent_fields_and_uses_unix_seconds() {
        let t = Task {
            id: "t1".into(),
            state: TaskState::Open as i32,
            deadline_unix: 1_700_000_000,
            ..Task::default()
        };
        let v = task_json(&t);
        assert_eq!(v["state"], "open");
        assert_eq!(v["deadline"], 1_700_000_000);
        assert!(v.get("approval").is_none() && v.get("value_limit").is_none());
        let t = Task {
            value_limit: Some(ValueLimit {
                amount_minor: 50005,
                currency: "EUR".into(),
            }),
            ..t
        };
        assert!(task_text(&t).contains("value_limit: 500.05:EUR"));
        assert!(task_text(&t).contains("deadline: 2023-11-14T22:13:20Z"));
    }

    #[test]
    fn times_outside_rfc3339_print_as_unix_seconds() {
        // (unix seconds, text): the edges of what RFC 3339 with four-digit years holds.
        let cases = [
            (0, "1970-01-01T00:00:00Z".to_owned()),
            (253_402_300_799, "9999-12-31T23:59:59Z".to_owned()),
            (253_402_300_800, "253402300800 (unix seconds)".to_owned()),
            (i64::MAX, format!("{} (unix seconds)", i64::MAX)),
            (-1, "-1 (unix seconds)".to_owned()),
        ];
        for (unix, want) in cases {
            assert_eq!(rfc3339(unix), want);
        }
    }
}
