"""The control socket end to end over a real Unix socket, with small test actors."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from loguru import logger

from trustchain.protocols.control import (
    MAX_LINE,
    AlreadyRunning,
    ControlServer,
    bind_control_socket,
)

from ..supervisors.test_supervisor import Tree


class Client:
    """A raw JSON-lines client on a trio socket stream."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def send(self, request: dict[str, Any]) -> None:
        await self.send_raw(json.dumps(request).encode() + b"\n")

    async def receive(self) -> dict[str, Any]:
        while b"\n" not in self.buffer:
            chunk = await self.stream.receive_some(65536)
            assert chunk, "server closed the connection"
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)

    async def call(self, **request: Any) -> dict[str, Any]:
        await self.send(request)
        return await self.receive()


@pytest.fixture
def tree():
    t = Tree()
    t.start([t.spec("echo"), t.spec("other")])
    yield t
    t.stop()


@pytest.fixture
async def server(tree: Tree, short_tmp: Path, nursery: trio.Nursery):
    path = short_tmp / "ctl.sock"
    listener = bind_control_socket(path)
    stops: list[bool] = []
    server = ControlServer(tree.registry, request_timeout_s=2.0, on_stop=lambda: stops.append(True))
    server.path = path  # type: ignore[attr-defined]
    server.stops = stops  # type: ignore[attr-defined]
    await nursery.start(server.serve, listener, nursery)
    return server


async def connect(server: ControlServer) -> Client:
    return Client(await trio.open_unix_socket(str(server.path)))  # type: ignore[attr-defined]


async def test_socket_is_created_owner_only(server: ControlServer) -> None:
    mode = stat.S_IMODE(os.stat(server.path).st_mode)  # type: ignore[attr-defined]
    assert mode == 0o600


async def test_a_request_reaches_the_actor_and_the_reply_carries_its_id(
    server: ControlServer,
) -> None:
    client = await connect(server)
    reply = await client.call(id="abc", to="echo", type="ping")
    assert reply == {"id": "abc", "ok": True, "result": "echo"}


async def test_many_requests_in_flight_on_one_connection(server: ControlServer) -> None:
    client = await connect(server)
    await client.send({"id": 0, "to": "echo", "type": "sleep", "args": {"seconds": 0.2}})
    for i in range(1, 101):
        await client.send({"id": i, "to": "other", "type": "ping"})
    replies = [await client.receive() for _ in range(101)]
    # The slow request does not hold up the others: its reply comes last.
    assert replies[-1]["id"] == 0
    assert sorted(r["id"] for r in replies) == list(range(101))
    assert all(r["ok"] for r in replies)


DEEP_JSON = b'{"id": 1, "to": "echo", "type": "ping", "args": ' + b"[" * 100_000 + b"\n"
BIG_INT_JSON = b'{"id": 1, "to": "echo", "type": "ping", "args": {"n": ' + b"7" * 5_000 + b"}}\n"


@pytest.fixture
def errors_logged() -> Iterator[list[str]]:
    """Every ERROR (or worse) line loguru writes while the test runs."""
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), level="ERROR")
    yield lines
    logger.remove(sink)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{not json\n", "invalid_request"),
        (b"[1, 2]\n", "invalid_request"),
        (b'{"id": 1, "type": "ping"}\n', "invalid_request"),
        (b'{"id": 1, "to": "echo", "type": "ping", "extra": 1}\n', "invalid_request"),
        (b'{"id": 1, "to": "nobody", "type": "ping"}\n', "unknown_actor"),
        (b'{"id": 1, "to": "echo", "type": "dance"}\n', "unknown_message"),
        (
            b'{"id": 1, "to": "echo", "type": "sleep", "args": {"seconds": "long"}}\n',
            "invalid_request",
        ),
        (b'{"id": 1, "to": "echo", "type": "sleep", "args": {"minutes": 1}}\n', "invalid_request"),
        (b'{"id": 1, "to": "echo", "type": "ping", "args": [1]}\n', "invalid_request"),
        (b'{"id": 1, "to": "runtime", "type": "explode"}\n', "unknown_message"),
        (b'{"id": 1, "to": "echo", "type": "refuse"}\n', "invalid_request"),
        (b'{"id": 1, "to": "echo", "type": "crash"}\n', "actor_crashed"),
        (b"\xff\xfe\n", "invalid_request"),
        (DEEP_JSON, "invalid_request"),
        (BIG_INT_JSON, "invalid_request"),
        (
            b'{"id": 1, "to": "echo", "type": "sleep", "args": {"seconds": NaN}}\n',
            "invalid_request",
        ),
    ],
)
async def test_bad_input_gets_an_error_reply_and_the_connection_goes_on(
    server: ControlServer, raw: bytes, code: str
) -> None:
    client = await connect(server)
    await client.send_raw(raw)
    reply = await client.receive()
    assert reply["ok"] is False
    assert reply["error"]["code"] == code
    assert reply["error"]["message"]
    assert reply["id"] in (1, None)
    assert (await client.call(id=2, to="other", type="ping"))["result"] == "other"


@pytest.mark.parametrize("raw", [DEEP_JSON, BIG_INT_JSON], ids=["nested-100000", "int-5000-digits"])
async def test_json_python_cannot_parse_is_invalid_request_not_an_internal_error(
    server: ControlServer, errors_logged: list[str], raw: bytes
) -> None:
    client = await connect(server)
    await client.send_raw(raw)
    reply = await client.receive()
    assert reply["error"]["code"] == "invalid_request", reply
    assert errors_logged == []


async def test_a_client_that_leaves_with_replies_unread_is_not_an_error(
    server: ControlServer, errors_logged: list[str]
) -> None:
    for _ in range(3):
        client = await connect(server)
        for i in range(20):
            await client.send({"id": i, "to": "echo", "type": "ping"})
        await trio.sleep(0.05)  # the replies wait, unread, in the client's buffer
        await client.send({"id": 20, "to": "echo", "type": "sleep", "args": {"seconds": 0.1}})
        await client.stream.aclose()  # unread data: the server's next read is a reset
    await trio.sleep(0.3)  # the sleep's reply goes to nobody
    assert errors_logged == []
    assert (await (await connect(server)).call(id=1, to="echo", type="ping"))["ok"] is True


async def test_a_line_over_one_mib_is_refused_and_skipped(server: ControlServer) -> None:
    client = await connect(server)
    big = json.dumps({"id": 1, "to": "echo", "type": "ping", "args": {"x": "a" * MAX_LINE}})
    await client.send_raw(big.encode() + b"\n")
    reply = await client.receive()
    assert reply["error"]["code"] == "line_too_long"
    assert (await client.call(id=2, to="echo", type="ping"))["ok"] is True


async def test_runtime_status_lists_every_actor_with_health(server: ControlServer) -> None:
    client = await connect(server)
    status = (await client.call(id=1, to="runtime", type="status"))["result"]
    by_name = {a["name"]: a for a in status["actors"]}
    assert set(by_name) == {"root", "echo", "other"}
    assert by_name["echo"]["supervisor"] == "root"
    assert by_name["echo"]["state"] == "running"
    for key in ("restarts", "last_failure", "mailbox", "handled", "uptime_s"):
        assert key in by_name["echo"]


async def test_runtime_restart_gives_a_new_incarnation_at_the_same_name(
    server: ControlServer, tree: Tree
) -> None:
    before = tree.incarnation("echo")
    client = await connect(server)
    reply = await client.call(id=1, to="runtime", type="restart", args={"name": "echo"})
    assert reply["ok"], reply
    assert reply["result"]["restarts"] == 1
    assert tree.incarnation("echo") == before + 1
    assert (await client.call(id=2, to="echo", type="ping"))["result"] == "echo"


async def test_runtime_stop_asks_the_runtime_to_stop(server: ControlServer) -> None:
    client = await connect(server)
    assert (await client.call(id=1, to="runtime", type="stop"))["result"] == "stopping"
    assert server.stops == [True]  # type: ignore[attr-defined]


async def test_a_second_runtime_on_the_same_socket_is_refused(server: ControlServer) -> None:
    with pytest.raises(AlreadyRunning):
        bind_control_socket(server.path)  # type: ignore[attr-defined]


def test_a_stale_socket_file_is_replaced(short_tmp: Path) -> None:
    path = short_tmp / "ctl.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # the file stays, nobody listens: as after a SIGKILL
    bind_control_socket(path).close()


CONNECT_AS_NOBODY = """
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print("EACCES"); sys.exit(0)
print(s.makefile().readline().strip())  # refused peers are told at once, unasked
"""


SYSTEM_PYTHON = "/usr/bin/python3"  # readable by every uid, unlike a venv under /root


@pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists(SYSTEM_PYTHON),
    reason="needs root (to act as a second uid) and a system python3",
)
async def test_another_uid_is_refused_by_mode_and_by_peer_credentials(
    server: ControlServer, short_tmp: Path
) -> None:
    short_tmp.chmod(0o755)
    path = str(server.path)  # type: ignore[attr-defined]

    def as_nobody() -> str:
        done = subprocess.run(
            [SYSTEM_PYTHON, "-c", CONNECT_AS_NOBODY, path],
            user=65534,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return done.stdout.strip()

    assert await trio.to_thread.run_sync(as_nobody) == "EACCES"
    os.chmod(path, 0o666)  # even with the mode loosened, SO_PEERCRED keeps them out
    reply = json.loads(await trio.to_thread.run_sync(as_nobody))
    assert reply["ok"] is False
    assert reply["error"]["code"] == "permission_denied"
