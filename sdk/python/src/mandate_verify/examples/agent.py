"""An AI agent in Python: it fetches its X509-SVID with py-spiffe, calls po-service over mTLS
(checking the server's SPIFFE ID), and can hand a narrower sub-task to a delegate workload with
the SDK's Delegation client. It never sees the user's credentials.

    python -m mandate_verify.examples.agent --endpoint unix:///run/mandate/api.sock \\
        --server 127.0.0.1:8443 --action po.draft --amount 120.00:EUR \\
        --delegate-to spiffe://example.org/ai/search --delegate-action po.read

Each call prints one JSON line like the Rust `ai-agent` (`action`, `amount`, `status`,
`allowed`, `body`, `elapsed_ms`); an opened sub-task prints `{"subtask": {...}}`. The exit code
is 0 when every call was allowed, 2 when one was refused, 1 on an error.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import time
from dataclasses import asdict

from spiffe.errors import PySpiffeError

from .. import Delegation, DelegationClient, DelegationError, SubtaskError
from ..tls import PeerError, SvidContexts, check_peer_svid, current_svid, x509_source
from .routes import parse_duration, route_for


def call(connection: http.client.HTTPConnection, action: str, amount: str | None) -> dict:
    """One call on the open connection, described as the Rust ai-agent describes it."""
    method, path = route_for(action)
    body = json.dumps({"amount": amount}) if amount else ""
    started = time.monotonic()
    connection.request(
        method, path, body=body, headers={"Host": "po-service", "Content-Type": "application/json"}
    )
    response = connection.getresponse()
    data = response.read()
    elapsed_ms = round((time.monotonic() - started) * 1000, 2)
    try:
        parsed = json.loads(data)
    except ValueError:
        parsed = data.decode("utf-8", "replace")
    return {
        "action": action,
        "amount": amount,
        "status": response.status,
        "allowed": response.status == 200,
        "body": parsed,
        "elapsed_ms": elapsed_ms,
    }


def connect(contexts: SvidContexts, server: str, server_id: str) -> http.client.HTTPSConnection:
    """An mTLS HTTP/1.1 connection to `server` that accepts only the SPIFFE ID `server_id`."""
    host, _, port = server.rpartition(":")
    connection = http.client.HTTPSConnection(host, int(port), context=contexts.client(), timeout=30)
    connection.connect()
    check_peer_svid(connection.sock.getpeercert(binary_form=True), contexts.trust_domain, server_id)
    return connection


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="agent",
        description="An AI agent that calls po-service under its task-bound SVID and delegates a step.",
    )
    parser.add_argument("--server", default="127.0.0.1:8443", help="po-service address, HOST:PORT")
    parser.add_argument(
        "--server-id",
        default="spiffe://example.org/po-service",
        help="the SPIFFE ID po-service must present",
    )
    parser.add_argument(
        "--endpoint",
        default=os.environ.get("SPIFFE_ENDPOINT_SOCKET"),
        help="the Workload API socket, unix:///path",
    )
    parser.add_argument("--spiffe-id", help="the SVID to call with when the workload holds several")
    parser.add_argument(
        "--action",
        action="append",
        default=[],
        help="an action to call, e.g. po.draft (repeatable; each call on one connection)",
    )
    parser.add_argument("--amount", help="the amount of the calls, e.g. 120.00:EUR")
    parser.add_argument(
        "--delegate-to", metavar="SPIFFE_ID", help="open a sub-task for this delegate entry"
    )
    parser.add_argument(
        "--delegate-action",
        action="append",
        default=[],
        help="an action of the sub-task (repeatable)",
    )
    parser.add_argument("--delegate-purpose", default="", help="the sub-task's purpose")
    parser.add_argument(
        "--delegate-value-limit",
        default="",
        help="the sub-task's value limit, e.g. 50.00:EUR (default: the delegator's)",
    )
    parser.add_argument(
        "--delegate-deadline",
        type=parse_duration,
        help="the sub-task's deadline from now, e.g. 10m (default: the delegator's)",
    )
    parser.add_argument(
        "--svid-timeout", type=parse_duration, default=30.0, help="how long to wait for an SVID"
    )
    args = parser.parse_args(argv)
    if not args.endpoint:
        parser.error("--endpoint is required (or set SPIFFE_ENDPOINT_SOCKET)")

    try:
        source = x509_source(args.endpoint, args.spiffe_id, timeout=args.svid_timeout)
    except PySpiffeError as error:
        print(f"agent: workload api: {error}", file=sys.stderr)
        return 1
    try:
        svid = current_svid(source, timeout=args.svid_timeout)
        try:
            delegation = Delegation.from_certificate(svid.leaf)
            if delegation is None:
                print(f"agent: SVID {svid.spiffe_id} (no delegation)", file=sys.stderr)
            else:
                print(
                    f"agent: SVID {svid.spiffe_id} acting for {delegation.principal} on task "
                    f"{delegation.task.id} ({delegation.task.purpose})",
                    file=sys.stderr,
                )
        except DelegationError as error:
            print(f"agent: SVID {svid.spiffe_id} with a bad delegation: {error}", file=sys.stderr)

        refused = False
        if args.action:
            connection = connect(SvidContexts(source), args.server, args.server_id)
            try:
                for action in args.action:
                    result = call(connection, action, args.amount)
                    print(json.dumps(result), flush=True)
                    refused |= not result["allowed"]
            finally:
                connection.close()

        if args.delegate_to:
            deadline = int(time.time() + args.delegate_deadline) if args.delegate_deadline else 0
            with DelegationClient(args.endpoint) as client:
                subtask = client.open_subtask(
                    args.delegate_to,
                    args.delegate_action,
                    purpose=args.delegate_purpose,
                    value_limit=args.delegate_value_limit,
                    deadline_unix=deadline,
                    delegator_id=str(svid.spiffe_id),
                )
            print(json.dumps({"subtask": asdict(subtask)}), flush=True)
        return 2 if refused else 0
    except (PeerError, SubtaskError, PySpiffeError, OSError, TimeoutError) as error:
        print(f"agent: {error}", file=sys.stderr)
        return 1
    finally:
        source.close()


if __name__ == "__main__":
    sys.exit(main())
