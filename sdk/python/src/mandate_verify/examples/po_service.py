"""po-service in Python: the purchase-order service of examples/src/bin/po-service.rs, with
the same flags, routes, status codes and JSON answers, over mTLS with HTTP/1.1 keep-alive.

The caller is read once per connection from the handshake; `authorize` runs on every request,
so a task closed while the connection stays open is refused on the next call.

    python -m mandate_verify.examples.po_service --listen 127.0.0.1:8443 \\
        --endpoint unix:///run/mandate/api.sock --require-delegation-under /ai --staleness 15s
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import logging
import os
import socket
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from spiffe.errors import PySpiffeError

from .. import (
    CrlWatcher,
    DelegationError,
    DelegationPolicy,
    Refusal,
    TaskStatusWatcher,
    ValueLimit,
    Verifier,
)
from ..caller import CallerIdentity
from ..tls import PeerError, SvidContexts, check_peer_svid, current_svid, x509_source
from .routes import action_for, parse_duration

_log = logging.getLogger("po-service")


class PoHandler(BaseHTTPRequestHandler):
    """One mTLS connection: every request on it is routed, authorized and answered."""

    protocol_version = "HTTP/1.1"

    def __init__(
        self,
        *args: Any,
        caller: CallerIdentity | Refusal,
        connection: int,
        verifier: Verifier,
        **kwargs: Any,
    ) -> None:
        self.caller = caller
        self.connection_number = connection
        self.verifier = verifier
        super().__init__(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        # Every method is routed (an unknown one gets the 404 of an unknown route).
        if name.startswith("do_"):
            return self.answer
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib's name)
        _log.debug("%s " + format, self.address_string(), *args)

    def answer(self) -> None:
        """Routes one request to an action, authorizes it, and does the (pretend) work."""
        method, path = self.command, self.path.split("?", 1)[0]
        body = self._read_body()
        action = action_for(method, path)
        if action is None:
            return self._reply(404, {"error": f"no route {method} {path}"})
        if body is None:
            return self._reply(400, {"error": "cannot read the request body"})
        try:
            amount = parse_amount(body)
        except ValueError as error:
            return self._reply(400, {"error": str(error)})
        caller = self.caller
        if isinstance(caller, Refusal):
            _log.warning("refused %s: %s (%s)", action, caller.code, caller)
            return self._refuse(caller)
        delegation = caller.delegation
        principal = str(delegation.principal) if delegation else "-"
        task = delegation.task.id if delegation else "-"
        try:
            self.verifier.authorize(caller, action, amount)
        except Refusal as refusal:
            _log.warning(
                "refused principal=%s task=%s action=%s amount=%s: %s (%s)",
                principal,
                task,
                action,
                amount or "-",
                refusal.code,
                refusal,
            )
            return self._refuse(refusal)
        _log.info(
            "allowed principal=%s task=%s action=%s amount=%s caller=%s",
            principal,
            task,
            action,
            amount or "-",
            caller.spiffe_id,
        )
        self._reply(
            200,
            {
                "ok": True,
                "action": action,
                "principal": principal,
                "task": task,
                "amount": str(amount) if amount else None,
                "connection": self.connection_number,
            },
        )

    def _refuse(self, refusal: Refusal) -> None:
        body = refusal.to_json()
        body["connection"] = self.connection_number
        self._reply(403, body)

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            self.close_connection = True
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()


def parse_amount(body: bytes) -> ValueLimit | None:
    """`{"amount": "120.00:EUR"}` from a body; an empty body or no `amount` means none."""
    if not body.strip(b" \t\r\n\x0c"):
        return None
    try:
        value = json.loads(body)
    except ValueError as error:
        raise ValueError(f"body is not JSON: {error}") from None
    amount = value.get("amount") if isinstance(value, dict) else None
    if amount is None:
        return None
    if not isinstance(amount, str):
        raise ValueError(f'amount must be a string like "120.00:EUR", got {json.dumps(amount)}')
    try:
        return ValueLimit.parse(amount)
    except DelegationError as error:
        raise ValueError(f"bad amount {json.dumps(amount)}: {error}") from None


class PoServer(ThreadingHTTPServer):
    """Accepts TCP, then (in the connection's thread) the TLS handshake and the caller."""

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], contexts: SvidContexts, verifier: Verifier
    ) -> None:
        self.contexts = contexts
        self.verifier = verifier
        self._numbers = itertools.count(1)
        super().__init__(address, PoHandler)

    def finish_request(self, request: socket.socket, client_address: Any) -> None:
        connection = next(self._numbers)
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        request.settimeout(30)
        try:
            tls = self.contexts.server().wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as error:
            _log.info("connection %d from %s: tls handshake: %s", connection, client_address, error)
            return
        try:
            check_peer_svid(tls.getpeercert(binary_form=True), self.contexts.trust_domain)
        except PeerError as error:
            _log.info("connection %d from %s refused: %s", connection, client_address, error)
            tls.close()
            return
        tls.settimeout(None)
        try:
            caller: CallerIdentity | Refusal = self.verifier.caller(
                tls.getpeercert(binary_form=True)
            )
            _log.info(
                "connection %d: caller %s delegated=%s",
                connection,
                caller.spiffe_id,
                caller.delegation is not None,
            )
        except Refusal as refusal:
            _log.warning("connection %d from a refused identity: %s", connection, refusal)
            caller = refusal
        handler = functools.partial(
            PoHandler, caller=caller, connection=connection, verifier=self.verifier
        )
        try:
            handler(tls, client_address, self)
        finally:
            try:
                tls.close()
            except OSError:
                pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="po-service",
        description="A purchase-order service that authorizes delegated AI agents with mandate-verify.",
    )
    parser.add_argument(
        "--listen",
        default="127.0.0.1:8443",
        help="HOST:PORT (port 0 picks a free port; the chosen address is printed)",
    )
    parser.add_argument(
        "--endpoint",
        default=os.environ.get("SPIFFE_ENDPOINT_SOCKET"),
        help="the local agent's Workload API socket, unix:///path (env SPIFFE_ENDPOINT_SOCKET)",
    )
    parser.add_argument(
        "--spiffe-id", help="the SVID to serve with when the workload holds several"
    )
    parser.add_argument(
        "--require-delegation-under",
        action="append",
        metavar="PREFIX",
        help="SPIFFE ID path prefixes whose callers must carry a delegation (repeatable; default /ai)",
    )
    parser.add_argument(
        "--staleness",
        default="15s",
        type=parse_duration,
        help="refuse every delegated caller once the newest task-status snapshot is older than this",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=os.environ.get("MANDATE_LOG", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.endpoint:
        parser.error("--endpoint is required (or set SPIFFE_ENDPOINT_SOCKET)")
    host, sep, port = args.listen.rpartition(":")
    if not sep or not port.isdigit():
        parser.error(f"--listen {args.listen!r} is not HOST:PORT")

    try:
        source = x509_source(args.endpoint, args.spiffe_id, timeout=60)
        own_id = current_svid(source, timeout=60).spiffe_id
    except (PySpiffeError, TimeoutError) as error:
        print(f"po-service: no SVID from the Workload API: {error}", file=sys.stderr)
        return 1
    contexts = SvidContexts(source)
    status = TaskStatusWatcher(args.endpoint, staleness=args.staleness)
    if not status.wait_ready(10):
        _log.warning("no task-status snapshot yet: delegated callers are refused until one arrives")
    crls = CrlWatcher(args.endpoint)
    policy = DelegationPolicy(args.require_delegation_under or ["/ai"])
    try:
        server = PoServer((host.strip("[]"), int(port)), contexts, Verifier(policy, status, crls))
    except OSError as error:
        print(f"po-service: cannot listen on {args.listen}: {error}", file=sys.stderr)
        return 1
    bound_host, bound_port = server.server_address[:2]
    print(f"po-service listening on {bound_host}:{bound_port} as {own_id}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        status.close()
        crls.close()
        source.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
