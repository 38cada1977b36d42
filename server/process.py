"""How a `cadence serve` process makes its app, when it runs several worker
processes (``--workers``): uvicorn starts each worker fresh, and each builds
its own app — its own engine and database connections — from the settings
the parent passed in the environment (after checking them itself, so a bad
config is one line from the parent, not a crash in every worker)."""

from __future__ import annotations

import json
import os
import socket

from fastapi import FastAPI

from cadence.runtime.config import RuntimeConfig, load_config
from cadence.runtime.inbox import InboxSettings
from cadence.runtime.mailboxes import Senders
from cadence.server.app import create_app
from cadence.server.webhooks import WebhookSecrets
from cadence.service import Application

SETTINGS = "CADENCE_SERVE_SETTINGS"  # JSON: db, config (a path or null), max_body


def build(db: str, config: RuntimeConfig, max_body: int) -> FastAPI:
    """The app over ``db`` with what ``config`` says (raises ConfigError, StoreError)."""
    secrets = WebhookSecrets.from_config(config.webhooks)
    inbox = InboxSettings(
        away_days=config.inbox.away_days,
        soft_bounce_limit=config.inbox.soft_bounce_limit,
        authserv_id=config.inbox.authserv_id,
    )
    application = Application.open(db, inbox=inbox, senders=Senders.from_config(config))
    return create_app(application, max_body=max_body, webhooks=secrets)


def app_from_environment() -> FastAPI:
    """uvicorn's factory in each worker process."""
    settings = json.loads(os.environ[SETTINGS])
    config = load_config(settings["config"]) if settings["config"] else RuntimeConfig()
    return build(settings["db"], config, int(settings["max_body"]))


def settings_for_workers(db: str, config_path: str | None, max_body: int) -> str:
    return json.dumps({"db": db, "config": config_path, "max_body": max_body})


def listening_socket(host: str, port: int) -> socket.socket:
    """The socket the worker processes share (raises OSError: address in use).

    Made here rather than by uvicorn, which makes it without naming the
    protocol: asyncio turns Nagle's algorithm off (``TCP_NODELAY``) only on
    sockets whose protocol says TCP, so with uvicorn's, every answer written
    in two parts (head, then body) waited for the client's delayed ACK —
    40 ms a request on Linux."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
    except OSError:
        listener.close()
        raise
    listener.set_inheritable(True)
    return listener
