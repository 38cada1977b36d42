"""The compile step, as a library: source in, diagnostics and IR out.

Nothing here prints or exits; the CLI renders what it returns. The order is
source → AST (stop at syntax errors: rules on a half-read file would mislead)
→ steps and alignments → graph → rules and template checks → IR.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

from cadence import __version__
from cadence.compiler import ir
from cadence.compiler.graph import StepGraph, build_graph, edges
from cadence.compiler.rules import Context, check_rules
from cadence.compiler.settings import check_settings, ir_window, resolve_settings
from cadence.compiler.steps import StepRef, alignments, flatten, send_option
from cadence.compiler.templates import TemplateChecker, step_templates
from cadence.compiler.timing import resolve_timings
from cadence.diagnostics import Diagnostic, has_errors, sort_diagnostics
from cadence.gcpause import gc_paused
from cadence.grammar import ParseResult, ast, parse_source
from cadence.source import Source, read_source, source_from_text

if TYPE_CHECKING:
    from cadence.reporting import Format


@dataclass(frozen=True)
class CompileResult:
    """What compiling gives: diagnostics, and the IR and graph when there are no errors.

    ``sources`` holds every file read (the campaign and its template files),
    for rendering diagnostics with their source lines.
    """

    path: str
    sources: Mapping[str, Source]
    diagnostics: tuple[Diagnostic, ...]
    ir: ir.Campaign | None = None
    graph: StepGraph | None = None

    @property
    def ok(self) -> bool:
        return self.ir is not None and not has_errors(self.diagnostics)

    def render(self, format: Format = "text", *, color: bool = False) -> str:
        """The diagnostics as ``cadence check`` writes them: ``text`` for
        people (each with its source lines underlined; ``color`` adds ANSI
        colour), or ``json``, ``github`` or ``sarif`` for machines."""
        from cadence.reporting import render

        return render(format, self.diagnostics, self.sources.get, color=color)


def compile_file(path: str | Path, *, templates_root: str | Path | None = None) -> CompileResult:
    """Compile a file. Raises :class:`OSError` when it cannot be read at all.

    Template files must lie in the campaign's folder (or below it), or in
    ``templates_root`` when given."""
    source = read_source(path)
    with gc_paused():
        return compile_parsed(parse_source(source), templates_root=templates_root)


def compile_source(
    text: str,
    path: str = "<string>",
    *,
    templates_root: str | Path | None = None,
    template_files: Mapping[str, str] | None = None,
) -> CompileResult:
    """Compile text; template paths are relative to ``path``'s folder. With
    ``template_files`` (path as the campaign names it → text), templates come
    from there and nothing is read from disk: for a campaign that arrives
    with its templates (over the HTTP API), not from a folder."""
    with gc_paused():
        return compile_parsed(
            parse_source(source_from_text(text, path)),
            templates_root=templates_root,
            template_files=template_files,
        )


def compile_parsed(
    parsed: ParseResult,
    *,
    templates_root: str | Path | None = None,
    build_ir: bool = True,
    template_files: Mapping[str, str] | None = None,
) -> CompileResult:
    """Compile a parsed campaign. ``build_ir=False`` stops after the checks
    (every diagnostic, no IR): what an editor needs after each keystroke."""
    root = Path(templates_root) if templates_root is not None else None
    with gc_paused():
        return _compile(parsed, root, build_ir, template_files)


def _compile(
    parsed: ParseResult,
    templates_root: Path | None,
    build_ir: bool,
    given: Mapping[str, str] | None = None,
) -> CompileResult:
    source = parsed.source
    sources = {source.path: source}
    if not parsed.ok or parsed.campaign is None:
        return CompileResult(source.path, sources, parsed.diagnostics)
    campaign = parsed.campaign
    refs = flatten(campaign)
    aligned = alignments(refs)
    timings = resolve_timings(refs, aligned)
    graph = build_graph(refs, aligned)
    settings = resolve_settings(campaign)

    context = Context(campaign, refs, aligned, timings, graph)
    found = [*check_settings(campaign), *check_rules(context)]
    checker = TemplateChecker(source, settings.requires, root=templates_root, given=given)
    texts = {ref.index: _templates(checker, ref) for ref in refs}
    # Read (and checked) with the rest, before the diagnostics are counted.
    own_texts = {ref.index: _variant_texts(checker, ref) for ref in refs}
    sources.update(checker.sources)
    diagnostics = tuple(sort_diagnostics([*found, *checker.diagnostics]))
    if has_errors(diagnostics) or not build_ir:
        return CompileResult(source.path, sources, diagnostics, graph=graph)

    fields = [*settings.requires, *sorted(checker.used_fields - set(settings.requires))]
    compiled = ir.Campaign(
        compiler=f"cadence {__version__}",
        source=ir.SourceFile(path=PurePath(source.path).as_posix(), sha256=source.sha256),
        name=campaign.name.value,
        settings=settings,
        person_fields=fields,
        steps=[
            _step(
                refs, ref, timings.get(ref.index), texts[ref.index], settings.send_window
            ).model_copy(update={"variants": _variants(own_texts[ref.index], texts[ref.index])})
            for ref in refs
        ],
        edges=edges(graph),
    )
    return CompileResult(source.path, sources, diagnostics, compiled, graph)


def _templates(checker: TemplateChecker, ref: StepRef) -> dict[str, ir.Template]:
    out = {}
    for name, text in step_templates(ref.step):
        template = checker.template(text)
        if template is not None:
            out[name] = template
    return out


VariantTexts = list[tuple[ast.Variant, dict[str, ir.Template]]]


def _variant_texts(checker: TemplateChecker, ref: StepRef) -> VariantTexts:
    """An email's variants, each with the texts it has itself (checked)."""
    if not isinstance(ref.step, ast.EmailStep):
        return []
    found = []
    for variant in ref.step.variants:
        own: dict[str, ir.Template] = {}
        for item in variant.items:
            template = checker.template(item.text)
            if template is not None and item.kind not in own:
                own[item.kind] = template
        found.append((variant, own))
    return found


def _variants(variants: VariantTexts, texts: dict[str, ir.Template]) -> list[ir.Variant]:
    """The variants as the IR holds them: each with its texts, else the email's."""
    return [
        ir.Variant(
            name=variant.name.value,
            weight=variant.weight,
            subject=own.get("subject", texts.get("subject")),
            body=own.get("body", texts.get("body")),
        )
        for variant, own in variants
    ]


_SEND_KINDS: dict[str, ir.SendKind] = {
    "send_choose": "choose",
    "send_at": "at",
    "send_task": "task",
    "send_with_previous": "with_previous",
}


def _step(
    refs: list[StepRef],
    ref: StepRef,
    timing: ir.Timing | None,
    texts: dict[str, ir.Template],
    window: ir.SendWindow | None,
) -> ir.Step:
    option = send_option(ref.step)
    follow_up = isinstance(ref.step, ast.EmailStep) and ref.step.follow_up
    own = ref.step.window if isinstance(ref.step, ast.EmailStep) else None
    automatic = option is not None and not isinstance(option, ast.SendTask)
    return ir.Step(
        id=ref.id,
        kind=ref.step.kind,
        day=ref.day,
        index=ref.index,
        send=_SEND_KINDS[option.kind] if option is not None else None,
        timing=timing,
        # The rules made sure a follow-up comes right after an email.
        reply_to=refs[ref.index - 1].id if follow_up else None,
        # A person sends a task email: only automatic emails keep to a window.
        window=(ir_window(own) if own is not None else window) if automatic else None,
        span=ref.step.span,
        subject=texts.get("subject"),
        body=texts.get("body"),
        notes=texts.get("notes"),
        message=texts.get("message"),
        title=texts.get("title"),
    )
