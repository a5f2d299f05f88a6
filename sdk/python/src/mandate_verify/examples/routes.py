"""What the purchase-order examples share (as examples/src/lib.rs): the route of each action,
and humantime-style durations for the flags (`15s`, `500ms`, `1m30s`)."""

from __future__ import annotations

import re

__all__ = ["PO_ACTIONS", "action_for", "route_for", "parse_duration"]

#: The actions the purchase-order service knows.
PO_ACTIONS = ("po.draft", "po.read", "po.approve", "po.submit")

_POST_ROUTES = {
    "draft": "po.draft",
    "approve": "po.approve",
    "submit": "po.submit",
    "read": "po.read",
}


def action_for(method: str, path: str) -> str | None:
    """The action a request means, or None for a route the service does not serve.

    `POST /po/draft|approve|submit|read` and `GET /po/<number>` (`po.read`).
    """
    if not path.startswith("/po/"):
        return None
    rest = path[len("/po/") :]
    if method == "POST":
        return _POST_ROUTES.get(rest)
    if method == "GET" and rest and all("0" <= c <= "9" for c in rest):
        return "po.read"
    return None


def route_for(action: str) -> tuple[str, str]:
    """The route an agent uses for `action`: `a.b` becomes `POST /a/b`."""
    return "POST", "/" + action.replace(".", "/")


_UNITS = {"ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+)\s*(ms|sec|min|s|m|h)")


def parse_duration(text: str) -> float:
    """Seconds of a duration such as `15s`, `500ms`, `2m` or `1m30s`; raises ValueError."""
    compact = text.strip()
    parts = list(_PART.finditer(compact))
    if not parts or "".join(p.group(0) for p in parts) != compact.replace(" ", ""):
        raise ValueError(f"invalid duration {text!r}: expected e.g. 15s, 500ms, 2m")
    return sum(int(p.group(1)) * _UNITS[p.group(2)] for p in parts)
