"""The ``cadence`` command line: a thin layer that reads files, calls the
library and renders what it returns.

Exit status: 0 clean, 1 findings (errors in a file, or files ``fmt --check``
would change), 2 usage or I/O errors (a missing or unreadable file, a bad
flag). Data goes to stdout, messages to stderr.
"""

from __future__ import annotations

import difflib
import os
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import click

from cadence import __version__
from cadence.diagnostics import Diagnostic, has_errors
from cadence.reporting import render_text, summary
from cadence.source import Source, decode_source

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


@dataclass
class _Run:
    """What one command has seen: sources by path, diagnostics, worst exit."""

    color: bool
    sources: dict[str, Source] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    status: int = EXIT_OK

    def fail(self, status: int) -> None:
        self.status = max(self.status, status)

    def read(self, path: str) -> Source | None:
        """Read a file (``-`` is stdin); an unreadable one is reported, exit 2."""
        try:
            data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
        except OSError as error:
            reason = error.strerror or str(error)
            click.echo(f"cadence: error: cannot read {path}: {reason}", err=True)
            self.fail(EXIT_USAGE)
            return None
        source = decode_source(data, "<stdin>" if path == "-" else path)
        self.sources[source.path] = source
        return source

    def report(self, diagnostics: Iterable[Diagnostic]) -> None:
        diagnostics = list(diagnostics)
        if not diagnostics:
            return
        self.diagnostics.extend(diagnostics)
        text = render_text(diagnostics, self.sources.get, color=self.color)
        # click strips ANSI codes off a non-terminal unless told the colour is wanted.
        click.echo(text, err=True, nl=False, color=self.color)
        if has_errors(diagnostics):
            self.fail(EXIT_FINDINGS)


def _use_color(choice: str) -> bool:
    if choice == "always":
        return True
    if choice == "never" or os.environ.get("NO_COLOR"):
        return False
    return sys.stderr.isatty()


_color_option = click.option(
    "--color",
    type=click.Choice(["auto", "always", "never"]),
    default="auto",
    show_default=True,
    help="Colour in messages (auto: only on a terminal, and never with NO_COLOR set).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cadence")
def cli() -> None:
    """Sales campaigns as code: check, format and compile .campaign files."""


@cli.command()
@click.argument("files", nargs=-1, required=True)
@_color_option
def check(files: tuple[str, ...], color: str) -> None:
    """Report every problem in FILES (exit 1 when any is an error)."""
    from cadence.grammar import parse_source

    run = _Run(_use_color(color))
    for path in files:
        source = run.read(path)
        if source is not None:
            run.report(parse_source(source).diagnostics)
    checked = sum(1 for _ in run.sources)
    if checked:
        click.echo(summary(run.diagnostics, checked), err=True)
    sys.exit(run.status)


@cli.command()
@click.argument("files", nargs=-1, required=True)
@click.option(
    "--check",
    "check_only",
    is_flag=True,
    help="Change nothing; list the files that would change and exit 1 if any.",
)
@click.option(
    "--diff",
    is_flag=True,
    help="Change nothing; print a unified diff and exit 1 if any file would change.",
)
@_color_option
def fmt(files: tuple[str, ...], check_only: bool, diff: bool, color: str) -> None:
    """Rewrite FILES in the canonical layout (``-`` reads stdin, writes stdout)."""
    from cadence.grammar import parse_source
    from cadence.grammar.formatter import format_campaign

    run = _Run(_use_color(color))
    changed: list[str] = []
    for path in files:
        source = run.read(path)
        if source is None:
            continue
        result = parse_source(source)
        run.report(result.diagnostics)
        if not result.ok or result.campaign is None or source.text is None:
            continue
        formatted = format_campaign(result.campaign, result.comments, result.source.text)
        if path == "-" and not (check_only or diff):
            click.echo(formatted, nl=False)
            continue
        if formatted == _original(source):
            continue
        changed.append(path)
        if diff:
            click.echo(_unified_diff(source.path, _original(source), formatted), nl=False)
        elif check_only:
            click.echo(f"would reformat {path}")
        elif not _write(run, Path(path), formatted):
            changed.pop()
    if check_only or diff:
        if changed:
            run.fail(EXIT_FINDINGS)
        elif run.status == EXIT_OK:
            click.echo(f"{len(files)} file{'s' * (len(files) != 1)} already formatted", err=True)
    elif changed:
        click.echo(f"reformatted {len(changed)} file{'s' * (len(changed) != 1)}", err=True)
    sys.exit(run.status)


def _original(source: Source) -> str:
    """The file as it is on disk, so a BOM or CRLF counts as a change."""
    text = source.text or ""
    raw = Path(source.path).read_bytes() if Path(source.path).is_file() else None
    if raw is not None and raw.startswith(b"\xef\xbb\xbf"):
        return "\ufeff" + text
    return text


def _unified_diff(path: str, before: str, after: str) -> str:
    lines = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        fromfile=f"{path} (original)",
        tofile=f"{path} (formatted)",
    )
    return "".join(lines)


def _write(run: _Run, path: Path, text: str) -> bool:
    """Replace ``path`` atomically: a crash leaves the old file or the new one."""
    try:
        mode = path.stat().st_mode
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
                handle.write(text)
            os.chmod(temp, mode & 0o7777)
            os.replace(temp, path)
        except BaseException:
            os.unlink(temp)
            raise
    except OSError as error:
        click.echo(f"cadence: error: cannot write {path}: {error.strerror or error}", err=True)
        run.fail(EXIT_USAGE)
        return False
    return True


@cli.command()
@click.argument("file")
@_color_option
def parse(file: str, color: str) -> None:
    """Print the AST of FILE as JSON (for tools; the stable artifact is the IR)."""
    from cadence.grammar import parse_source

    run = _Run(_use_color(color))
    source = run.read(file)
    if source is None:
        sys.exit(run.status)
    result = parse_source(source)
    run.report(result.diagnostics)
    if result.ok and result.campaign is not None:
        click.echo(result.campaign.model_dump_json(indent=2))
    sys.exit(run.status)


def main() -> None:
    cli(prog_name="cadence")
