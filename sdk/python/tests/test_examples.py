"""The po-service and agent examples end to end over real mTLS on loopback, with a stand-in
agent socket that serves X509-SVIDs made here, the task-status feed and the CRLs: routes,
status codes and JSON answers, HTTP/1.1 keep-alive, and refusals on an open connection."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import threading
import time

import pytest
from spiffe._proto import workload_pb2

from mandate_verify import CrlWatcher, DelegationPolicy, TaskStatusWatcher, Verifier
from mandate_verify._proto.taskstatus_pb2 import TaskStatusSnapshot
from mandate_verify.examples.agent import call, connect
from mandate_verify.examples.po_service import PoServer
from mandate_verify.tls import PeerError, SvidContexts, x509_source

from certs import Authority, der, pkcs8
from conftest import sample
from fake_agent import FakeAgent

SERVICE_ID = "spiffe://example.org/po-service"
AI_ID = "spiffe://example.org/ai/procurement"
BARE_ID = "spiffe://example.org/ai/bare"


def now_ms() -> int:
    return int(time.time() * 1000)


class World:
    """A CA, a stand-in agent serving three SVIDs, and the Python po-service on loopback."""

    def __init__(self, tmp_path) -> None:
        self.ca = Authority()
        self.ai_cert, ai_key = self.ca.svid(AI_ID, sample().to_der())
        svids = [
            self._svid(SERVICE_ID, *self.ca.svid(SERVICE_ID)),
            self._svid(AI_ID, self.ai_cert, ai_key),
            self._svid(BARE_ID, *self.ca.svid(BARE_ID)),
        ]
        self.x509 = workload_pb2.X509SVIDResponse(svids=svids, crl=[self.ca.crl([])])
        self.agent = FakeAgent(str(tmp_path / "api.sock"))
        self.agent.first_x509 = self.x509
        self.agent.first_status = TaskStatusSnapshot(sequence=1, as_of_unix_ms=now_ms())
        self.status = TaskStatusWatcher(self.agent.endpoint, staleness=30)
        self.crls = CrlWatcher(self.agent.endpoint)
        assert self.status.wait_ready(5) and self.crls.wait_ready(5)
        self.source = x509_source(self.agent.endpoint, SERVICE_ID, timeout=10)
        verifier = Verifier(DelegationPolicy(["/ai"]), self.status, self.crls)
        self.server = PoServer(("127.0.0.1", 0), SvidContexts(self.source), verifier)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.clients = []

    def _svid(self, spiffe_id, cert, key) -> workload_pb2.X509SVID:
        return workload_pb2.X509SVID(
            spiffe_id=spiffe_id,
            x509_svid=der(cert),
            x509_svid_key=pkcs8(key),
            bundle=der(self.ca.cert),
        )

    def svid_message(self, crls: list[bytes]) -> workload_pb2.X509SVIDResponse:
        message = workload_pb2.X509SVIDResponse()
        message.CopyFrom(self.x509)
        del message.crl[:]
        message.crl.extend(crls)
        return message

    def connect(self, spiffe_id: str):
        source = x509_source(self.agent.endpoint, spiffe_id, timeout=10)
        self.clients.append(source)
        return connect(SvidContexts(source), self.address, SERVICE_ID)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        for source in [self.source, *self.clients]:
            source.close()
        self.status.close()
        self.crls.close()
        self.agent.stop()


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path)
    yield w
    w.close()


def code(result: dict) -> str | None:
    return None if result["allowed"] else result["body"].get("refused")


def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_routes_answers_and_refusals_on_one_connection(world: World) -> None:
    connection = world.connect(AI_ID)
    allowed = call(connection, "po.draft", "120.00:EUR")
    assert allowed["status"] == 200
    assert allowed["body"] == {
        "ok": True,
        "action": "po.draft",
        "principal": "user:alice@example.org",
        "task": "task-4711",
        "amount": "120.00:EUR",
        "connection": 1,
    }
    assert call(connection, "po.read", None)["body"]["amount"] is None
    refused = call(connection, "po.approve", None)
    assert (refused["status"], code(refused), refused["body"]["connection"]) == (
        403,
        "action_not_granted",
        1,
    )
    assert refused["body"]["reason"] == 'action "po.approve" is not granted by task task-4711'
    assert code(call(connection, "po.draft", "500.01:EUR")) == "over_value_limit"
    assert code(call(connection, "po.draft", "1.00:USD")) == "currency_mismatch"

    for method, path, body, status, answer in [
        ("GET", "/po/4711", "", 200, None),
        ("GET", "/po/draft", "", 404, {"error": "no route GET /po/draft"}),
        ("DELETE", "/po/draft", "", 404, {"error": "no route DELETE /po/draft"}),
        ("POST", "/po/draft", "{", 400, None),
        (
            "POST",
            "/po/draft",
            '{"amount": 12}',
            400,
            {"error": 'amount must be a string like "120.00:EUR", got 12'},
        ),
        ("POST", "/po/draft", '{"amount": "12.345:EUR"}', 400, None),
        ("POST", "/po/draft", '{"note": "no amount"}', 200, None),
    ]:
        connection.request(method, path, body=body)
        response = connection.getresponse()
        got = json.loads(response.read())
        assert response.status == status, (method, path, body, got)
        if answer is not None:
            assert got == answer

    # The task closes while the connection stays open: the next request is refused on it.
    world.agent.status.push(
        TaskStatusSnapshot(closed_task_ids=["task-4711"], sequence=2, as_of_unix_ms=now_ms())
    )
    assert wait_for(lambda: code(call(connection, "po.read", None)) == "task_closed")
    assert call(connection, "po.read", None)["body"]["connection"] == 1


def test_the_crl_refuses_on_an_open_connection(world: World) -> None:
    connection = world.connect(AI_ID)
    assert code(call(connection, "po.read", None)) is None
    world.agent.x509.push(world.svid_message([world.ca.crl([world.ai_cert.serial_number])]))
    assert wait_for(lambda: code(call(connection, "po.read", None)) == "certificate_revoked")


def test_handshake_refusals(world: World) -> None:
    bare = world.connect(BARE_ID)
    refused = call(bare, "po.read", None)
    assert (refused["status"], code(refused)) == (403, "delegation_required")
    # The client checks the server's SPIFFE ID.
    source = x509_source(world.agent.endpoint, AI_ID, timeout=10)
    world.clients.append(source)
    with pytest.raises(PeerError):
        connect(SvidContexts(source), world.address, "spiffe://example.org/not-po-service")
    # A client whose certificate no CA of the bundle signed gets no HTTP at all.
    stranger, key = Authority("stranger").svid(AI_ID)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    pem = world_tmp_pem(stranger, key)
    context.load_cert_chain(*pem)
    import http.client

    conn = http.client.HTTPSConnection(
        "127.0.0.1", int(world.address.split(":")[1]), context=context, timeout=10
    )
    with pytest.raises((ssl.SSLError, ConnectionError, http.client.RemoteDisconnected, OSError)):
        conn.request("POST", "/po/read")
        conn.getresponse()


def world_tmp_pem(cert, key) -> tuple[str, str]:
    import tempfile

    from cryptography.hazmat.primitives import serialization

    directory = tempfile.mkdtemp()
    paths = (os.path.join(directory, "c.pem"), os.path.join(directory, "k.pem"))
    with open(paths[0], "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(paths[1], "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return paths


def test_the_agent_example_calls_and_opens_a_subtask(world: World) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "mandate_verify.examples.agent",
            "--endpoint",
            world.agent.endpoint,
            "--spiffe-id",
            AI_ID,
            "--server",
            world.address,
            "--action",
            "po.draft",
            "--action",
            "po.approve",
            "--amount",
            "120.00:EUR",
            "--delegate-to",
            "spiffe://example.org/ai/search",
            "--delegate-action",
            "po.read",
            "--delegate-value-limit",
            "50.00:EUR",
            "--delegate-deadline",
            "10m",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert run.returncode == 2, run.stderr
    assert [code(r) for r in lines[:2]] == [None, "action_not_granted"]
    assert lines[0]["body"]["connection"] == lines[1]["body"]["connection"], "one connection"
    assert lines[2] == {
        "subtask": {
            "task_id": "task-sub-1",
            "parent_id": "task-4711",
            "deadline_unix": 1_800_000_000,
            "depth": 1,
        }
    }
    sent = world.agent.requests[0]
    assert (sent.target_id, list(sent.actions), sent.value_limit, sent.delegator_id) == (
        "spiffe://example.org/ai/search",
        ["po.read"],
        "50.00:EUR",
        AI_ID,
    )
    assert abs(sent.deadline_unix - (time.time() + 600)) < 60
    assert "acting for user:alice@example.org on task task-4711" in run.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--endpoint", "unix:///nonexistent/api.sock"],
        ["--endpoint", "unix:///nonexistent/api.sock", "--staleness", "5x"],
        ["--endpoint", "unix:///nonexistent/api.sock", "--listen", "nowhere"],
        [],
    ],
)
def test_po_service_refuses_bad_input_with_one_line_and_no_stdout(args, tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SPIFFE_ENDPOINT_SOCKET"}
    run = subprocess.run(
        [sys.executable, "-m", "mandate_verify.examples.po_service", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert run.returncode != 0
    assert run.stdout == ""
    assert "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith("po-service")
