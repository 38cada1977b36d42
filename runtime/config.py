"""The runtime config file (TOML) that `cadence run` reads: a pydantic model,
so a wrong key or type is one line naming the key, never a traceback.

```toml
db = "cadence.db"            # or a postgresql:// URL
smtp = "127.0.0.1:25"        # or: outbox = "outbox"
throttle = "30 per 60"
worker = "dispatcher-1"

[sender]
name = "Sam Seller"
email = "sam@example.com"
signature = "-- Sam"
```
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class SenderConfig(_Section):
    name: str = ""
    email: str = "cadence@localhost"
    signature: str = ""


class RuntimeConfig(_Section):
    db: str | None = None
    smtp: str | None = None
    outbox: str | None = None
    throttle: str | None = None
    worker: str | None = None
    sender: SenderConfig = SenderConfig()


MAX_CONFIG_BYTES = 1024 * 1024


def load_config(path: str | Path) -> RuntimeConfig:
    """Read and check the config at ``path``; raises :class:`ConfigError`."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise ConfigError(f"{path}: {error.strerror or error}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES // 1024} KiB; not a config")
    try:
        found = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not TOML: {error}") from None
    try:
        return RuntimeConfig.model_validate(found)
    except ValidationError as error:
        raise ConfigError(f"{path}: {_first_problem(error)}") from None


def _first_problem(error: ValidationError) -> str:
    problem = error.errors()[0]
    key = ".".join(str(part) for part in problem["loc"])
    if problem["type"] == "extra_forbidden":
        known = _known(problem["loc"][:-1])
        return f"unknown setting {key!r} (known: {', '.join(known)})"
    if problem["type"] in ("model_type", "model_attributes_type"):
        return f"`{key}` must be a table, like [{key}]"
    return f"`{key}`: {problem['msg'].lower()}"


def _known(section: tuple[int | str, ...]) -> list[str]:
    model: type[BaseModel] = SenderConfig if section == ("sender",) else RuntimeConfig
    return sorted(model.model_fields)
