"""The ``.campaign`` files a command was given: files as they are, folders
searched through.

A folder is searched recursively, in name order, for ``*.campaign`` files,
passing over what a repository does not hold as sources: hidden folders
(``.git``, ``.venv``), tool folders (``node_modules``, ``__pycache__``), and
whatever the ``.gitignore`` files say — those of the folder and below it, and
those above it up to the repository's top — read with git's rules.
Symbolic links to folders are not followed (a link may lead back up).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathspec import GitIgnoreSpec

SUFFIX = ".campaign"
SKIPPED = frozenset({"node_modules", "__pycache__", "venv"})


@dataclass
class Found:
    """The files to work on, and a line for each folder that held none."""

    files: list[str] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)


def campaign_files(arguments: Sequence[str]) -> Found:
    """Files given are taken as they are (whatever their name); folders are
    searched. A file reached twice is worked on once."""
    found, seen = Found(), set()
    for argument in arguments:
        if argument != "-" and os.path.isdir(argument):
            inside = list(_search(Path(argument)))
            if not inside:
                found.empty.append(argument)
        else:
            inside = [argument]
        for path in inside:
            key = path if path == "-" else os.path.realpath(path)
            if key not in seen:
                seen.add(key)
                found.files.append(path)
    return found


@dataclass(frozen=True)
class _Ignore:
    """One ``.gitignore``: its patterns hold for paths below ``base``."""

    base: Path
    spec: GitIgnoreSpec

    def decides(self, path: Path, folder: bool) -> bool | None:
        """Ignored (True), kept by a `!` pattern (False), or not its say (None)."""
        relative = os.path.relpath(path, self.base).replace(os.sep, "/")
        if relative.startswith("../"):
            return None
        return self.spec.check_file(relative + "/" if folder else relative).include


def _search(top: Path) -> Iterator[str]:
    ignores = _ignores_above(top)
    # Each folder's own .gitignore holds for it and below: kept per folder.
    # Keyed as os.walk names folders (`./sub` for a top of `.`: not Path's `sub`).
    in_force: dict[str, list[_Ignore]] = {str(top): ignores + _ignore_in(top)}
    for folder, folders, files in os.walk(str(top)):
        rules = in_force.pop(folder, [])
        kept = []
        for name in sorted(folders):
            path = Path(folder, name)
            if name.startswith(".") or name in SKIPPED or _ignored(rules, path, True):
                continue
            kept.append(name)
            in_force[os.path.join(folder, name)] = rules + _ignore_in(path)
        folders[:] = kept  # os.walk goes only into these, in this order
        for name in sorted(files):
            path = Path(folder, name)
            if (
                name.endswith(SUFFIX)
                and not name.startswith(".")
                and not _ignored(rules, path, False)
            ):
                yield str(path)


def _ignored(rules: list[_Ignore], path: Path, folder: bool) -> bool:
    """git's rule: the last pattern that matches decides, the files nearer
    the path after those above it (so a `!` below can keep what one above
    ignored)."""
    ignored = False
    for rule in rules:
        decision = rule.decides(path, folder)
        if decision is not None:
            ignored = decision
    return ignored


def _ignore_in(folder: Path) -> list[_Ignore]:
    try:
        text = (folder / ".gitignore").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    from pathspec import GitIgnoreSpec  # only where there are rules to read
    from pathspec.patterns.gitignore import GitIgnorePatternError

    # A line git cannot read as a pattern (a lone trailing `\`) is passed
    # over, as git passes over it; the file's other lines still hold.
    lines = []
    for line in text.splitlines():
        try:
            GitIgnoreSpec.from_lines([line])
        except (GitIgnorePatternError, ValueError):
            continue
        lines.append(line)
    return [_Ignore(folder, GitIgnoreSpec.from_lines(lines))]


def _ignores_above(top: Path) -> list[_Ignore]:
    """The .gitignore files between the repository's top and ``top`` (not
    ``top``'s own): none when ``top`` is not in a git repository."""
    here = Path(os.path.abspath(top))
    if (here / ".git").exists():
        return []  # a repository's top: nothing above it counts (an outer repository's rules)
    chain = []
    for folder in here.parents:
        chain.append(folder)
        if (folder / ".git").exists():
            break
    else:
        return []
    return [rule for folder in reversed(chain) for rule in _ignore_in(folder)]
