"""The command line around `cadence serve`: tokens, users, and a server
that refuses to start on a config it cannot use — one line, never a
traceback."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx
import pytest
from click.testing import CliRunner, Result

from cadence.cli import cli
from cadence.server import process


def run(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=stdin, env=env, catch_exceptions=False)


def test_a_token_is_printed_once_and_listed_without_itself(tmp_path: Path) -> None:
    db = str(tmp_path / "c.db")
    made = run("token", "create", "crm", "--read-only", "--db", db)
    assert made.exit_code == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("cad_") and "not shown again" in made.stderr
    listed = run("token", "list", "--format", "json", "--db", db)
    [entry] = json.loads(listed.stdout)
    assert entry["name"] == "crm" and entry["read_only"] and token not in listed.stdout
    assert run("token", "revoke", "crm", "--db", db).exit_code == 0
    again = run("token", "revoke", "crm", "--db", db)
    assert again.exit_code == 2 and again.stderr.startswith("cadence: error: no token named 'crm'")
    assert "revoked" in run("token", "list", "--db", db).stdout


def test_a_token_name_must_be_printable(tmp_path: Path) -> None:
    made = run("token", "create", "bad\nname", "--db", str(tmp_path / "c.db"))
    assert made.exit_code == 2 and "printable" in made.stderr and made.stdout == ""


def test_users_are_added_listed_and_disabled(tmp_path: Path) -> None:
    db = str(tmp_path / "c.db")
    short = run("user", "add", "sam", "--password-stdin", "--db", db, stdin="short\n")
    assert short.exit_code == 2 and "a password is 10 to" in short.stderr
    added = run(
        "user", "add", "sam", "--password-stdin", "--db", db, stdin="correct horse battery\n"
    )
    assert added.exit_code == 0, added.stderr
    twice = run(
        "user", "add", "sam", "--password-stdin", "--db", db, stdin="correct horse battery\n"
    )
    assert twice.exit_code == 2 and "exists" in twice.stderr
    assert "sam  active" in run("user", "list", "--db", db).stdout
    assert run("user", "disable", "sam", "--db", db).exit_code == 0
    assert "sam  disabled" in run("user", "list", "--db", db).stdout
    assert run("user", "disable", "nobody", "--db", db).exit_code == 2


def test_serve_refuses_to_start_without_the_secrets_its_config_names(tmp_path: Path) -> None:
    config = tmp_path / "cadence.toml"
    config.write_text('[webhooks]\nmailgun_key_env = "CADENCE_TEST_MAILGUN_KEY"\n')
    started = run("serve", "--config", str(config), "--db", str(tmp_path / "c.db"),
                  env={"CADENCE_TEST_MAILGUN_KEY": ""})  # fmt: skip
    assert started.exit_code == 2
    assert started.stderr == (
        "cadence: error: webhooks: set Mailgun's signing key in the environment variable "
        "CADENCE_TEST_MAILGUN_KEY\n"
    )
    config.write_text("[webhooks]\nsendgrid_key = 'inline secrets are refused'\n")
    refused = run("serve", "--config", str(config), "--db", str(tmp_path / "c.db"))
    assert refused.exit_code == 2 and "unknown setting 'webhooks.sendgrid_key'" in refused.stderr


def test_the_workers_shared_socket_sends_answers_without_waiting_for_acks() -> None:
    """asyncio turns Nagle's algorithm off only on a socket whose protocol
    says TCP; the workers' shared socket must say so, or an answer written
    in two parts waits 40 ms for the client's delayed ACK."""
    listener = process.listening_socket("127.0.0.1", 0)
    port = listener.getsockname()[1]

    async def accepted_nodelay() -> int:
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            raw = writer.get_extra_info("socket")
            seen.set_result(raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(connected, sock=listener)
        async with server:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            value = await asyncio.wait_for(seen, 10)
            writer.close()
        return value

    assert asyncio.run(accepted_nodelay()) != 0


def test_serve_with_workers_says_when_its_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        refused = run("serve", "--db", str(tmp_path / "c.db"), "--workers", "2", "--port", port)
    assert refused.exit_code == 2
    assert refused.stderr.startswith(f"cadence: error: cannot listen on 127.0.0.1:{port}: ")


@pytest.mark.slow
def test_serve_with_two_workers_answers_from_both(tmp_path: Path) -> None:
    db = str(tmp_path / "c.db")
    token = run("token", "create", "tool", "--db", db).stdout.strip()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "cadence", "serve", "--db", db, "--port", str(port),
         "--workers", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as client:
            for _ in range(600):  # until both workers have started
                try:
                    answers = [client.get("/api/v1/campaigns") for _ in range(4)]
                    break
                except httpx.TransportError:
                    time.sleep(0.05)  # a server starting: nothing to wait on but the port
            assert [answer.status_code for answer in answers] == [200] * 4
            assert all(answer.json() == [] for answer in answers)
    finally:
        server.terminate()
        _, errors = server.communicate(timeout=60)
    assert "serving on http://127.0.0.1" in errors and "Traceback" not in errors
