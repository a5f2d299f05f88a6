//! Shared pieces of the Mandate examples: how the purchase-order service maps HTTP requests to
//! delegation actions, so that the AI agent and the service agree on one table.

/// The actions the purchase-order service knows, with their HTTP routes.
///
/// `POST /po/draft` is `po.draft`, `POST /po/approve` is `po.approve`, `POST /po/submit` is
/// `po.submit`, and both `GET /po/<number>` and `POST /po/read` are `po.read`.
pub const PO_ACTIONS: [&str; 4] = ["po.draft", "po.read", "po.approve", "po.submit"];

/// The action a request means, or `None` for a route the service does not serve.
pub fn action_for(method: &str, path: &str) -> Option<&'static str> {
    let rest = path.strip_prefix("/po/")?;
    match (method, rest) {
        ("POST", "draft") => Some("po.draft"),
        ("POST", "approve") => Some("po.approve"),
        ("POST", "submit") => Some("po.submit"),
        ("POST", "read") => Some("po.read"),
        ("GET", number) if !number.is_empty() && number.chars().all(|c| c.is_ascii_digit()) => {
            Some("po.read")
        }
        _ => None,
    }
}

/// The HTTP route an agent uses for `action`: `a.b` becomes `POST /a/b`.
///
/// Unknown actions still map (`x.y` to `POST /x/y`) so that a refusal comes from the service.
pub fn route_for(action: &str) -> (&'static str, String) {
    ("POST", format!("/{}", action.replace('.', "/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_round_trip_for_known_actions() {
        for action in PO_ACTIONS {
            let (method, path) = route_for(action);
            assert_eq!(action_for(method, &path), Some(action), "{action}");
        }
    }

    #[test]
    fn reads_and_unknown_routes() {
        assert_eq!(action_for("GET", "/po/4711"), Some("po.read"));
        assert_eq!(action_for("GET", "/po/draft"), None);
        assert_eq!(action_for("DELETE", "/po/draft"), None);
        assert_eq!(action_for("POST", "/admin/draft"), None);
    }
}
