"""The ``cadence`` command line: a thin layer that reads files, calls the
library and renders what it returns.

Exit status: 0 clean (warnings allowed), 1 findings (errors in a file, or files
``fmt --check`` would change), 2 usage or I/O errors (a missing or unreadable
file, a bad flag). Data goes to stdout; messages to stderr, except that the
machine formats of diagnostics (json, github, sarif) are data.
"""

from __future__ import annotations

import difflib
import errno
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, cast

import click

from cadence import __version__
from cadence.diagnostics import Diagnostic, Severity, has_errors
from cadence.files import write_atomically
from cadence.gcpause import importing
from cadence.reporting import FORMATS, Format, render, summary
from cadence.source import BOM, Source, decode_source, read_limited, source_from_text

if TYPE_CHECKING:
    from cadence.compiler.compile import CompileResult

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2
STDIN = "<stdin>"  # the name stdin's text goes by in diagnostics
TEXT_LIMIT = 50  # diagnostics shown per file in text; machines get them all


@dataclass
class _Run:
    """What one command has seen: sources, diagnostics, the worst exit status."""

    format: Format
    color: bool
    sources: dict[str, Source] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    files: int = 0
    status: int = EXIT_OK
    strict: bool = False  # --warnings-as-errors
    # When stdout carries a text (fixed or formatted stdin, a diff), a machine
    # format of the diagnostics goes to stderr instead of mixing with it.
    stdout_taken: bool = False

    def fail(self, status: int) -> None:
        self.status = max(self.status, status)

    def read(self, path: str) -> Source | None:
        """Read a file (``-`` is stdin); an unreadable one is reported, exit 2."""
        try:
            data = read_limited(path, sys.stdin.buffer if path == "-" else None)
        except OSError as error:
            reason = error.strerror or str(error)
            click.echo(f"cadence: error: cannot read {path}: {reason}", err=True)
            self.fail(EXIT_USAGE)
            return None
        source = decode_source(data, STDIN if path == "-" else path)
        self.sources[source.path] = source
        self.files += 1
        return source

    def report(
        self, diagnostics: Iterable[Diagnostic], sources: dict[str, Source] | None = None
    ) -> None:
        """Text is written as it comes; machine formats once, at :meth:`finish`."""
        diagnostics = list(diagnostics)
        self.sources.update(sources or {})
        self.diagnostics.extend(diagnostics)
        if has_errors(diagnostics) or (
            self.strict and any(d.severity is Severity.WARNING for d in diagnostics)
        ):
            self.fail(EXIT_FINDINGS)
        if self.format == "text" and diagnostics:
            text = render("text", diagnostics, self.sources.get, color=self.color, limit=TEXT_LIMIT)
            # click strips ANSI codes off a non-terminal unless told colour is wanted.
            click.echo(text, err=True, nl=False, color=self.color)

    def files_in(self, arguments: Iterable[str]) -> list[str]:
        """The files given, and the ``.campaign`` files in the folders given
        (see :mod:`cadence.campaign_files`); a folder with none is an error."""
        from cadence.campaign_files import campaign_files

        found = campaign_files(list(arguments))
        for folder in found.empty:
            click.echo(f"cadence: error: no .campaign files in {folder}", err=True)
            self.fail(EXIT_USAGE)
        return found.files

    def finish(self, *, quiet: bool = False) -> None:
        if self.format != "text":
            rendered = render(self.format, self.diagnostics, self.sources.get)
            click.echo(rendered, nl=False, err=self.stdout_taken)
        elif self.files and not quiet:
            click.echo(summary(self.diagnostics, self.files), err=True)
        sys.exit(self.status)


def _use_color(choice: str) -> bool:
    if choice == "always":
        return True
    if choice == "never" or os.environ.get("NO_COLOR"):
        return False
    return sys.stderr.isatty()


def _default_format() -> str:
    return "github" if os.environ.get("GITHUB_ACTIONS") == "true" else "text"


def _diagnostic_options(function: Any) -> Any:
    function = click.option(
        "--color",
        type=click.Choice(["auto", "always", "never"]),
        default="auto",
        show_default=True,
        help="Colour in text messages (auto: only on a terminal, never with NO_COLOR set).",
    )(function)
    return click.option(
        "--format",
        "format_",
        type=click.Choice(FORMATS),
        default=_default_format,
        help="How diagnostics are written: text (stderr), or json, github or sarif (stdout). "
        "Default: github under GitHub Actions, else text.",
    )(function)


def _templates_root_option(function: Any) -> Any:
    return click.option(
        "--templates-root",
        type=click.Path(file_okay=False),
        default=None,
        help="The folder template files may come from (default: the campaign file's folder).",
    )(function)


def _warnings_as_errors_option(function: Any) -> Any:
    return click.option(
        "--warnings-as-errors",
        "strict",
        is_flag=True,
        help="Exit 1 on warnings too (info notes never fail).",
    )(function)


def _run(format_: str, color: str, *, strict: bool = False) -> _Run:
    return _Run(cast(Format, format_), _use_color(color), strict=strict)


class _Commands(click.Group):
    """The engine's commands (enroll, run, tasks…) are loaded when one is
    asked for or the commands are listed: checking, formatting and compiling
    a campaign never import the engine's libraries."""

    engine_loaded = False

    def _load_engine(self) -> None:
        if not self.engine_loaded:
            from cadence.cli_engine import register

            register(self)
            self.engine_loaded = True

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and not self.engine_loaded:
            self._load_engine()
            command = super().get_command(ctx, cmd_name)
        return command

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_engine()
        return super().list_commands(ctx)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cadence")
def cli() -> None:
    """Sales campaigns as code: check, format and compile .campaign files."""


@cli.command()
@click.argument("files", nargs=-1, required=True)
@_diagnostic_options
@_warnings_as_errors_option
@click.option(
    "--fix",
    is_flag=True,
    help="Apply the safe fixes (what a help line proposes), then report what is left.",
)
@click.option(
    "--unsafe-fixes",
    is_flag=True,
    help="With --fix: also the fixes that change what the campaign does.",
)
@_templates_root_option
def check(
    files: tuple[str, ...],
    format_: str,
    color: str,
    strict: bool,
    fix: bool,
    unsafe_fixes: bool,
    templates_root: str | None,
) -> None:
    """Report every problem in FILES (exit 1 when any is an error). A folder
    is searched for .campaign files, hidden and git-ignored ones passed over."""
    run = _run(format_, color, strict=strict)
    run.stdout_taken = (fix or unsafe_fixes) and "-" in files
    for path in run.files_in(files):
        source = run.read(path)
        if source is None:
            continue
        result = _checked(source, templates_root)
        if fix or unsafe_fixes:
            result = _fixed(run, source, result, templates_root, unsafe=unsafe_fixes)
        run.report(result.diagnostics, dict(result.sources))
    run.finish()


def _checked(source: Source, templates_root: str | None) -> CompileResult:
    """What `check` reports for ``source``: every diagnostic (it writes no IR)."""
    with importing():
        from cadence.compiler.compile import compile_parsed
        from cadence.grammar import parse_source

    return compile_parsed(parse_source(source), templates_root=templates_root, build_ir=False)


MAX_FIX_ROUNDS = 10  # a fix may uncover another; never loop for ever


def _fixed(
    run: _Run, source: Source, result: CompileResult, templates_root: str | None, *, unsafe: bool
) -> CompileResult:
    """``result``'s fixes applied to its files (atomically), checked again,
    round after round until none applies; the last check is returned. Fixes
    to stdin's text are written to stdout."""
    from cadence.fixing import apply_fixes, chosen_fixes

    done, boms = 0, {file: found.had_bom for file, found in result.sources.items()}
    for _ in range(MAX_FIX_ROUNDS):
        texts = {file: found.text for file, found in result.sources.items() if found.text}
        applied = apply_fixes(texts, chosen_fixes(result.diagnostics, unsafe=unsafe))
        if not applied.fixes:
            break
        for file, text in applied.texts.items():
            content = (BOM if boms.get(file) else "") + text
            if file != STDIN and not _write(run, Path(file), content):
                return result
        done += applied.fixes
        if source.path in applied.texts:
            source = source_from_text(applied.texts[source.path], source.path)
        result = _checked(source, templates_root)
    if source.path == STDIN:
        click.echo((BOM if boms.get(STDIN) else "") + (source.text or ""), nl=False)
    if done and run.format == "text":
        click.echo(f"fixed {done} problem{'s' * (done != 1)} in {source.path}", err=True)
    return result


@cli.command(name="compile")
@click.argument("file")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              help="Write the IR here (atomically) instead of stdout.")  # fmt: skip
@_diagnostic_options
@_warnings_as_errors_option
@_templates_root_option
def compile_(
    file: str,
    output: str | None,
    format_: str,
    color: str,
    strict: bool,
    templates_root: str | None,
) -> None:
    """Compile FILE to its IR (JSON); nothing is written when it has errors
    (or, with --warnings-as-errors, warnings)."""
    with importing():
        from cadence.compiler.compile import compile_parsed
        from cadence.compiler.ir import dump_ir
        from cadence.grammar import parse_source

    run = _run(format_, color, strict=strict)
    source = run.read(file)
    if source is not None:
        result = compile_parsed(parse_source(source), templates_root=templates_root)
        run.report(result.diagnostics, dict(result.sources))
        if result.ok and result.ir is not None and run.status == EXIT_OK:
            text = dump_ir(result.ir)
            if output is None:
                click.echo(text, nl=False)
            else:
                _write(run, Path(output), text)
    run.finish(quiet=output is None)


@cli.command()
@click.argument("file")
@click.option("--format", "graph_format", type=click.Choice(["dot", "mermaid", "json"]),
              default="dot", show_default=True, help="How the graph is written.")  # fmt: skip
@click.option("--color", type=click.Choice(["auto", "always", "never"]), default="auto",
              help="Colour in text messages.")  # fmt: skip
@_templates_root_option
def graph(file: str, graph_format: str, color: str, templates_root: str | None) -> None:
    """Print the step graph of FILE: steps, and next / same_time / reply_to edges."""
    with importing():
        from cadence.compiler.compile import compile_parsed
        from cadence.compiler.render_graph import render_graph
        from cadence.grammar import parse_source

    run = _run("text", color)
    source = run.read(file)
    if source is not None:
        result = compile_parsed(parse_source(source), templates_root=templates_root)
        run.report(result.diagnostics, dict(result.sources))
        if result.graph is not None:
            name = result.ir.name if result.ir is not None else Path(file).stem
            click.echo(render_graph(result.graph, graph_format, name), nl=False)
    run.finish(quiet=True)


EXIT_SKIPPED = 3  # `plan`: some people were skipped, the others planned


@cli.command(name="plan")
@click.argument("file")
@click.option(
    "--people",
    "people_path",
    required=True,
    help="People to plan for: a CSV or JSON Lines file (by extension), or - for stdin.",
)
@click.option(
    "--start",
    required=True,
    help="When the campaign starts: ISO 8601 (a time without offset is read in the "
    "campaign's zone), or `now`.",
)
@click.option(
    "--at",
    "overrides",
    multiple=True,
    metavar="STEP=HH:MM",
    help="A new send time for a `send at` step (as the launcher may choose).",
)
@click.option(
    "--format",
    "plan_format",
    type=click.Choice(["table", "jsonl", "csv", "ics"]),
    default=None,
    help="Default: table on a terminal, else jsonl.",
)
@click.option("--render", is_flag=True, help="Also render each subject and body.")
@click.option(
    "--csv-safe/--no-csv-safe",
    default=True,
    show_default=True,
    help="CSV: put a ' before cells that start with = + - @ (a spreadsheet would run them).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="Write here (atomically) instead of stdout.",
)
@click.option("--sender-name", default="", help="`sender.name` in templates.")
@click.option("--sender-email", default="", help="`sender.email` in templates.")
@click.option("--sender-signature", default="", help="`sender.signature` in templates.")
@click.option(
    "--color",
    type=click.Choice(["auto", "always", "never"]),
    default="auto",
    help="Colour in text messages.",
)
@_templates_root_option
def plan_(
    file: str,
    people_path: str,
    start: str,
    overrides: tuple[str, ...],
    plan_format: str | None,
    render: bool,
    csv_safe: bool,
    output: str | None,
    sender_name: str,
    sender_email: str,
    sender_signature: str,
    color: str,
    templates_root: str | None,
) -> None:
    """Expand FILE (.campaign or compiled .json) for PEOPLE into timed sends and tasks.

    Exit status: 0, 1 when the campaign has errors, 2 for bad input (start,
    --at, unreadable files, IR of an unknown version), 3 when some people were
    skipped (each is reported with its line) and the others planned.
    """
    from cadence.runtime import plan_command

    run = _run("text", color)
    ir = _load_campaign(run, file, templates_root)
    if ir is None:
        run.finish(quiet=True)
    try:
        options = plan_command.Options.parse(
            ir,
            start=start,
            overrides=overrides,
            sender_name=sender_name,
            sender_email=sender_email,
            sender_signature=sender_signature,
        )
    except ValueError as error:
        _usage_error(str(error))
    chosen = plan_format or ("table" if output is None and sys.stdout.isatty() else "jsonl")
    from cadence.progress import count_rows, progress

    # A bar only when the rows go to a file: on a terminal they are the output.
    total = count_rows(people_path) if output is not None else None
    try:
        with progress("plan", total, enabled=output is not None) as advance:
            report = plan_command.run_plan(
                ir, people_path, options, chosen, render, output, csv_safe=csv_safe,
                on_progress=advance,
            )  # fmt: skip
    except ValueError as error:  # PlanError: caught before any row is written
        _usage_error(str(error))
    except OSError as error:
        if error.errno == errno.EPIPE:
            raise  # the reader closed the pipe (`| head`): click exits quietly
        if getattr(error, "filename", None):
            _usage_error(f"{error.filename}: {error.strerror or error}")
        _usage_error(f"cannot write the plan: {error.strerror or error}")
    for problem in report.problems:
        click.echo(
            f"cadence: {report.people_label}:{problem.line}: skipped: {problem.message}", err=True
        )
    for line in report.zone_warnings:
        click.echo(f"cadence: {report.people_label}: warning: {line}", err=True)
    click.echo(report.summary(), err=True)
    sys.exit(EXIT_SKIPPED if report.problems else EXIT_OK)


def _usage_error(message: str) -> NoReturn:
    click.echo(f"cadence: error: {message}", err=True)
    sys.exit(EXIT_USAGE)


def _load_campaign(run: _Run, file: str, templates_root: str | None = None) -> Any:
    """A compiled campaign from a `.campaign` (compiled now) or an IR `.json`."""
    from cadence.compiler.ir import IRError, load_ir

    if file.endswith(".json"):
        try:
            return load_ir(Path(file).read_bytes())
        except OSError as error:
            _usage_error(f"cannot read {file}: {error.strerror or error}")
        except IRError as error:
            _usage_error(f"{file}: {error}")
    from cadence.compiler import cache

    source = run.read(file)
    if source is None:
        return None
    cached = cache.lookup(source, templates_root)
    if cached is not None:
        return cached  # compiled before, and nothing it read has changed
    from cadence.compiler.compile import compile_parsed
    from cadence.grammar import parse_source

    result = compile_parsed(parse_source(source), templates_root=templates_root)
    run.report([d for d in result.diagnostics if d.is_error], dict(result.sources))
    if not result.ok or result.ir is None:
        return None
    cache.store(source, templates_root, result.ir, result.sources)
    return result.ir


@cli.command()
def schema() -> None:
    """Print the JSON Schema of the IR that `cadence compile` writes."""
    import json

    from cadence.compiler.ir import json_schema

    click.echo(json.dumps(json_schema(), indent=2))


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
@_diagnostic_options
def fmt(files: tuple[str, ...], check_only: bool, diff: bool, format_: str, color: str) -> None:
    """Rewrite FILES in the canonical layout (``-`` reads stdin, writes stdout).
    A folder is searched for .campaign files, hidden and git-ignored ones
    passed over."""
    with importing():
        from cadence.grammar import parse_source
        from cadence.grammar.formatter import format_campaign

    run = _run(format_, color)
    run.stdout_taken = check_only or diff or "-" in files
    changed: list[str] = []
    paths = run.files_in(files)
    for path in paths:
        source = run.read(path)
        if source is None:
            continue
        result = parse_source(source)
        run.report(result.diagnostics)
        if not result.ok or result.campaign is None or source.text is None:
            continue
        formatted = format_campaign(result.campaign, result.comments, source.text)
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
            click.echo(f"{len(paths)} file{'s' * (len(paths) != 1)} already formatted", err=True)
    elif changed:
        click.echo(f"reformatted {len(changed)} file{'s' * (len(changed) != 1)}", err=True)
    run.finish(quiet=True)


def _original(source: Source) -> str:
    """The file as it was read, so a BOM counts as a change."""
    return BOM + (source.text or "") if source.had_bom else source.text or ""


def _unified_diff(path: str, before: str, after: str) -> str:
    lines = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        fromfile=f"{path} (original)",
        tofile=f"{path} (formatted)",
    )
    return "".join(lines)


def _write(run: _Run, path: Path, text: str) -> bool:
    """Write ``path`` atomically (see :func:`cadence.files.write_atomically`)."""
    try:
        write_atomically(path, lambda out: out.write(text.encode("utf-8")))
    except OSError as error:
        click.echo(f"cadence: error: cannot write {path}: {error.strerror or error}", err=True)
        run.fail(EXIT_USAGE)
        return False
    return True


@cli.command()
def lsp() -> None:
    """The language server, over stdin and stdout: diagnostics as you type,
    formatting, an outline, quick fixes (for an editor to start)."""
    from cadence.lsp import serve

    serve()


@cli.command()
@click.argument("code", required=False)
@click.option("--markdown", is_flag=True, help="Every code, as the rules section of the docs.")
def explain(code: str | None, markdown: bool) -> None:
    """What diagnostic CODE means (P026, or its name: wrong-quotes), why the
    rule exists, and an example of the mistake and of the fix."""
    from cadence import explaining

    if markdown:
        click.echo(explaining.as_markdown(), nl=False)
        return
    if code is None:
        raise click.UsageError("give a code, such as `cadence explain C005`")
    found = explaining.find(code)
    if found is None:
        guess = explaining.suggestion(code)
        hint = f" (did you mean {guess}?)" if guess else "; docs/diagnostics.md lists them all"
        click.echo(f"cadence: error: no diagnostic code {code!r}{hint}", err=True)
        sys.exit(EXIT_USAGE)
    click.echo(explaining.as_text(found), nl=False)


@cli.command()
@click.argument("file")
@_diagnostic_options
def parse(file: str, format_: str, color: str) -> None:
    """Print the AST of FILE as JSON (for tools; the stable artifact is the IR)."""
    from cadence.grammar import parse_source

    run = _run(format_, color)
    source = run.read(file)
    if source is not None:
        result = parse_source(source)
        run.report(result.diagnostics)
        if result.ok and result.campaign is not None:
            click.echo(result.campaign.model_dump_json(indent=2))
    run.finish(quiet=True)


def main() -> None:
    try:
        cli(prog_name="cadence")
    except OSError as error:  # writing the output failed (a full disk, a closed device)
        if error.errno == errno.EPIPE:
            sys.exit(1)
        where = getattr(error, "filename", None) or "the output"
        click.echo(f"cadence: error: cannot write {where}: {error.strerror or error}", err=True)
        sys.exit(EXIT_USAGE)
