"""Compiled campaigns kept between runs, so `plan` and `enroll` of a
campaign that has not changed skip the parser and the compiler (and never
import them): the per-campaign work is done once, not at every command.

An entry is found by what the compile read: the campaign's text and path,
the folder it was compiled from, the templates root, and cadence itself (its
version and its compiler's source files). It lists every template file the
compile read with a digest of its text; a template changed, removed or
unreadable since means the entry is not used. Only campaigns that compiled
without errors are kept; a damaged or foreign entry is ignored (and
compiled again), never trusted: it is read as IR, validated like any IR, and
must be of the same campaign text. A cache folder another user can write to
is not used at all (see :func:`cadence.cachedir.cache_dir`).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import importlib.util
import json
import os
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cadence import __version__
from cadence.cachedir import cache_dir
from cadence.compiler.ir import Campaign, IRError, dump_ir, load_ir
from cadence.source import Source, decode_source

KEPT = 64  # entries; the oldest go first
MAX_ENTRY_BYTES = 64 * 1024 * 1024
MAX_TEMPLATE_BYTES = 1024 * 1024  # as the compiler reads templates
_PREFIX = "campaign-ir-"


def lookup(source: Source, templates_root: str | None) -> Campaign | None:
    """The compiled campaign for ``source`` if an entry still holds."""
    path = _entry(source, templates_root)
    if path is None:
        return None
    try:
        entry = json.loads(_read(path, MAX_ENTRY_BYTES, follow=False))
        templates = entry["templates"]
        if not isinstance(templates, list) or not all(
            _unchanged(str(name), str(digest)) for name, digest in templates
        ):
            return None
        ir = load_ir(str(entry["ir"]))
    except (OSError, ValueError, KeyError, TypeError, IRError):
        return None
    # An entry of another campaign (damaged, or put there) is not this one.
    return ir if ir.source.sha256 == source.sha256 else None


def store(
    source: Source, templates_root: str | None, ir: Campaign, sources: Mapping[str, Source]
) -> None:
    """Keep ``ir``, compiled from ``source`` (``sources``: every file the
    compile read). Best effort: a cache that cannot be written is no error."""
    path = _entry(source, templates_root)
    if path is None:
        return
    templates = [
        [name, _digest(read.text)]
        for name, read in sources.items()
        if name != source.path and read.text is not None
    ]
    data = json.dumps({"templates": templates, "ir": dump_ir(ir)}).encode()
    try:
        # A temporary file renamed over the entry: a symlink put in its
        # place is replaced, never written through.
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(descriptor, "wb") as out:
                out.write(data)
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise
        _prune(path.parent)
    except OSError:
        pass


def _entry(source: Source, templates_root: str | None) -> Path | None:
    folder = cache_dir()
    if folder is None or source.text is None or source.path == "<stdin>":
        return None
    try:
        here = os.getcwd()
    except OSError:  # the current folder was removed
        return None
    root = "" if templates_root is None else "root:" + os.path.abspath(templates_root)
    parts = [_code_version(), source.path, here, root, source.sha256]
    return folder / f"{_PREFIX}{_digest(chr(0).join(parts))[:32]}.json"


def _unchanged(name: str, digest: str) -> bool:
    try:
        text = decode_source(_read(Path(name), MAX_TEMPLATE_BYTES), name).text
    except OSError:
        return False
    return text is not None and _digest(text) == digest


def _read(path: Path, limit: int, *, follow: bool = True) -> bytes:
    """A regular file's bytes, at most ``limit`` (a FIFO, a device or a huge
    file an entry names is refused, not waited for or read whole)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0)
    if not follow:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    descriptor = os.open(path, flags)
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, "too large")
    return data


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@functools.cache
def _code_version() -> str:
    """cadence's version and the size and time of every file of its parser
    and compiler (an edited checkout compiles afresh, not from the cache)."""
    # Found, not imported: importing the grammar would load the parser.
    files: list[Path] = []
    for name in ("cadence.templating", "cadence.compiler", "cadence.grammar"):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            for folder in map(Path, spec.submodule_search_locations):
                files += sorted(folder.glob("*.py")) + sorted(folder.glob("*.lark"))
        elif spec is not None and spec.origin:
            files.append(Path(spec.origin))
    stamps = [f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files]
    return _digest(";".join([__version__, *stamps]))


def _prune(folder: Path) -> None:
    entries = sorted(folder.glob(f"{_PREFIX}*.json"), key=_age)
    for old in entries[:-KEPT]:
        with contextlib.suppress(OSError):  # another process took it first
            old.unlink()


def _age(path: Path) -> Any:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0
