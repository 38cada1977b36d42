"""The command line around `cadence serve`: tokens, users, and a server
that refuses to start on a config it cannot use — one line, never a
traceback."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from cadence.cli import cli


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
