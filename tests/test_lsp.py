"""`cadence lsp` end to end: a real client (pytest-lsp) talks to the server
over stdio, as an editor does."""

from __future__ import annotations

import random
import shutil
import sys
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pygls.uris import from_fs_path
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from tests.conftest import EXAMPLES

BAD = (
    'campaign "Café 😀" {\n'  # beyond the BMP: two UTF-16 units
    "  day 1 {\n"
    "    email intro {\n"
    "      sned choose\n"
    '      subject "Hi"\n'
    '      body "b"\n'
    "    }\n"
    "  }\n"
    "}\n"
)
GOOD = (
    'campaign "c" {\n  day 1 {\n    email intro {\n      send choose\n      subject "Hi"\n'
    '      body "b"\n    }\n    call ring { notes "n" }\n  }\n\n  day 3 {\n'
    '    email bump { send at 10:00 subject "More" body "More" }\n  }\n}\n'
)


@pytest_lsp.fixture(
    config=ClientServerConfig(server_command=[sys.executable, "-m", "cadence", "lsp"]),
)
async def client(lsp_client: LanguageClient, tmp_path: Path):  # type: ignore[no-untyped-def]
    await lsp_client.initialize_session(
        types.InitializeParams(
            capabilities=client_capabilities("visual-studio-code"),
            root_uri=from_fs_path(str(tmp_path)),
        )
    )
    yield
    await lsp_client.shutdown_session()


async def opened(client: LanguageClient, path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    uri = from_fs_path(str(path))
    assert uri is not None
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri, language_id="campaign", version=1, text=text
            )
        )
    )
    # The document's own diagnostics come last (a template's come before).
    while uri not in client.diagnostics:
        await client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    return uri


@pytest.mark.asyncio
async def test_diagnostics_come_on_open_and_go_on_change(
    client: LanguageClient, tmp_path: Path
) -> None:
    uri = await opened(client, tmp_path / "a.campaign", BAD)
    [found] = client.diagnostics[uri]
    assert found.code == "P020" and found.source == "cadence"
    assert found.severity == types.DiagnosticSeverity.Error
    assert "did you mean `send`?" in found.message
    assert found.range == types.Range(
        start=types.Position(line=3, character=6), end=types.Position(line=3, character=10)
    )
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=GOOD)],
        )
    )
    await client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    assert list(client.diagnostics[uri]) == []


@pytest.mark.asyncio
async def test_positions_count_utf16_units(client: LanguageClient, tmp_path: Path) -> None:
    text = 'campaign "😀" {\n  timezone "Nowhere/😀"\n\n  day 1 {\n    call c { }\n  }\n}\n'
    uri = await opened(client, tmp_path / "z.campaign", text)
    [found] = client.diagnostics[uri]
    assert found.code == "C017"
    # `  timezone ` is 11 characters; the string is 11 characters, 12 UTF-16 units
    # (the emoji is two).
    assert found.range.start.character == 11 and found.range.end.character == 11 + 12


TEMPLATED = (
    'campaign "c" {\n  day 1 {\n    email intro {\n      send choose\n      subject "Hi"\n'
    '      body template "body.txt.j2"\n    }\n  }\n}\n'
)


def _misspelt_template(folder: Path) -> str:
    """``body.txt.j2`` (which TEMPLATED reads), using a name no person has; its URI."""
    (folder / "body.txt.j2").write_text("Hello {{ nme }}\n")
    uri = from_fs_path(str(folder / "body.txt.j2"))
    assert uri is not None
    return uri


@pytest.mark.asyncio
async def test_problems_inside_a_template_file_show_in_that_file(
    client: LanguageClient, tmp_path: Path
) -> None:
    template = _misspelt_template(tmp_path)
    uri = await opened(client, tmp_path / "t.campaign", TEMPLATED)
    [found] = client.diagnostics[template]
    assert found.code == "C031" and found.range.start == types.Position(line=0, character=9)
    assert list(client.diagnostics[uri]) == []


@pytest.mark.asyncio
async def test_a_template_two_campaigns_share_keeps_its_problems_while_either_is_open(
    client: LanguageClient, tmp_path: Path
) -> None:
    template = _misspelt_template(tmp_path)
    first = await opened(client, tmp_path / "one.campaign", TEMPLATED)
    second = await opened(client, tmp_path / "two.campaign", TEMPLATED)
    [found] = client.diagnostics[template]  # found by both, shown once
    assert found.code == "C031"
    client.text_document_did_close(
        types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=first))
    )
    # The server answers in order: once this answer is here, so is what it
    # published on the close.
    await client.text_document_document_symbol_async(
        types.DocumentSymbolParams(text_document=types.TextDocumentIdentifier(uri=second))
    )
    assert [d.code for d in client.diagnostics[template]] == ["C031"]  # two.campaign still reads it


@pytest.mark.asyncio
async def test_related_places_travel_with_a_diagnostic(
    client: LanguageClient, tmp_path: Path
) -> None:
    text = (
        'campaign "c" {\n  day 1 {\n    email a { send choose subject "s" body "b" }\n'
        '    call c { notes "n" }\n    email b { send at 10:00 follow up body "b" }\n  }\n}\n'
    )
    uri = await opened(client, tmp_path / "r.campaign", text)
    [found] = client.diagnostics[uri]
    assert found.code == "C002" and found.related_information
    assert found.related_information[0].location.range.start.line == 3


async def _quick_fixes(
    client: LanguageClient, uri: str, diagnostic: types.Diagnostic
) -> list[types.Command | types.CodeAction]:
    actions = await client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            range=diagnostic.range,
            context=types.CodeActionContext(diagnostics=[diagnostic]),
        )
    )
    assert actions is not None
    return actions


@pytest.mark.asyncio
async def test_quick_fixes_are_the_fixes_help_lines_propose(
    client: LanguageClient, tmp_path: Path
) -> None:
    uri = await opened(client, tmp_path / "a.campaign", BAD)
    [diagnostic] = client.diagnostics[uri]
    actions = await _quick_fixes(client, uri, diagnostic)
    [action] = actions
    assert isinstance(action, types.CodeAction)
    assert action.kind == types.CodeActionKind.QuickFix and action.is_preferred
    assert action.edit is not None and action.edit.changes is not None
    [edit] = action.edit.changes[uri]
    assert edit.new_text == "send" and edit.range == diagnostic.range


@pytest.mark.asyncio
async def test_the_quick_fix_that_removes_a_line_of_its_own_removes_the_line(
    client: LanguageClient, tmp_path: Path
) -> None:
    text = (
        'campaign "c" {\n  day 1 {\n    email a {\n      send choose\n      follow up\n'
        '      body "b"\n    }\n  }\n}\n'
    )
    uri = await opened(client, tmp_path / "f.campaign", text)
    [diagnostic] = [d for d in client.diagnostics[uri] if "follow up" in d.message]
    actions = await _quick_fixes(client, uri, diagnostic)
    [removal] = [a for a in actions if isinstance(a, types.CodeAction) and "Remove" in a.title]
    assert removal.edit is not None and removal.edit.changes is not None
    [edit] = removal.edit.changes[uri]
    assert edit.new_text == ""
    assert edit.range == types.Range(
        start=types.Position(line=4, character=0), end=types.Position(line=5, character=0)
    )


@pytest.mark.asyncio
async def test_formatting_gives_the_canonical_layout(
    client: LanguageClient, tmp_path: Path
) -> None:
    messy = 'campaign "c" {\n day 1 {\n  call ring {notes "n"}\n }\n}\n'
    uri = await opened(client, tmp_path / "m.campaign", messy)
    edits = await client.text_document_formatting_async(
        types.DocumentFormattingParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            options=types.FormattingOptions(tab_size=2, insert_spaces=True),
        )
    )
    assert edits is not None
    [edit] = edits
    assert edit.new_text == 'campaign "c" {\n  day 1 {\n    call ring { notes "n" }\n  }\n}\n'
    assert edit.range.start == types.Position(line=0, character=0)


@pytest.mark.asyncio
async def test_the_outline_is_days_and_their_steps(client: LanguageClient, tmp_path: Path) -> None:
    uri = await opened(client, tmp_path / "g.campaign", GOOD)
    symbols = await client.text_document_document_symbol_async(
        types.DocumentSymbolParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )
    assert symbols is not None
    outline = [
        (day.name, [(step.name, step.detail) for step in day.children or []])
        for day in symbols
        if isinstance(day, types.DocumentSymbol)
    ]
    assert outline == [
        ("day 1", [("intro", "email"), ("ring", "call")]),
        ("day 3", [("bump", "email")]),
    ]


@pytest.mark.asyncio
async def test_the_server_survives_any_edit(client: LanguageClient, tmp_path: Path) -> None:
    """Two hundred random edits of an example — characters, quotes, braces,
    control characters, lone surrogates' neighbours — each answered with
    diagnostics, and the server still formats afterwards."""
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    path = tmp_path / "examples" / "q1-outbound.campaign"
    text = path.read_text(encoding="utf-8")
    uri = await opened(client, path, text)
    rng = random.Random(20261128)
    alphabet = [
        '"',
        "'",
        "{",
        "}",
        "\n",
        "\\",
        "#",
        "é",
        "😀",
        "\x00",
        "\u2028",
        "{{",
        "%",
        " ",
        "a",
    ]
    for version in range(2, 202):
        at = rng.randrange(len(text) + 1)
        if rng.random() < 0.5 and text:
            text = text[:at] + text[at + 1 :]
        else:
            text = text[:at] + rng.choice(alphabet) + text[at:]
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)],
            )
        )
        await client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    edits = await client.text_document_formatting_async(
        types.DocumentFormattingParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            options=types.FormattingOptions(tab_size=2, insert_spaces=True),
        )
    )
    assert edits is not None  # answered (empty while the text has syntax errors)


@pytest.mark.asyncio
async def test_an_unreadable_template_is_a_diagnostic(
    client: LanguageClient, tmp_path: Path
) -> None:
    (tmp_path / "binary.j2").write_bytes(b"\xff\xfe\x00\x01 not text")
    text = (
        'campaign "c" {\n  day 1 {\n    email intro {\n      send choose\n      subject "Hi"\n'
        '      body template "binary.j2"\n    }\n  }\n}\n'
    )
    uri = await opened(client, tmp_path / "b.campaign", text)
    template = from_fs_path(str(tmp_path / "binary.j2")) or ""
    problems = [*client.diagnostics.get(uri, []), *client.diagnostics.get(template, [])]
    assert problems and all(p.severity == types.DiagnosticSeverity.Error for p in problems)


HOVERED = (
    'campaign "h" {\n'
    '  timezone "Europe/Stockholm"\n'
    "  requires company\n"
    "\n"
    "  day 1 {\n"
    '    email intro { send at 09:30 subject "Hi {{ company }}" body "b" }\n'
    '    email personal { send task subject "Note" body "b" }\n'
    "  }\n"
    "\n"
    "  day 3 {\n"
    '    email bump { send with previous follow up body "More" }\n'
    '    call ring { notes "n" }\n'
    "  }\n"
    "}\n"
)


async def hover_text(client: LanguageClient, uri: str, line: int, character: int) -> str:
    found = await client.text_document_hover_async(
        types.HoverParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=line, character=character),
        )
    )
    assert found is not None and isinstance(found.contents, types.MarkupContent)
    return found.contents.value


@pytest.mark.asyncio
async def test_hover_tells_when_a_step_goes(client: LanguageClient, tmp_path: Path) -> None:
    uri = await opened(client, tmp_path / "h.campaign", HOVERED)
    intro = await hover_text(client, uri, 5, 12)  # on `intro`
    assert "**email `intro`**, day 1: day 1 at 09:30 Europe/Stockholm" in intro
    bump = await hover_text(client, uri, 10, 25)  # on `with`
    assert "day 3 at the time `personal` is sent" not in bump  # a task: no time to take
    assert "waits for task `personal`" in bump and "thread of `personal`" in bump
    ring = await hover_text(client, uri, 11, 10)
    assert ring == "**a call task `ring`**, due on day 3"
    company = await hover_text(client, uri, 5, 54)  # `company` inside the subject
    assert company.startswith("**`company`**: a field of the person")


@pytest.mark.asyncio
async def test_definition_goes_to_the_anchor_and_to_template_files(
    client: LanguageClient, tmp_path: Path
) -> None:
    uri = await opened(client, tmp_path / "h.campaign", HOVERED)
    found = await client.text_document_definition_async(
        types.DefinitionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=10, character=28),  # on `previous`
        )
    )
    assert isinstance(found, types.Location)
    assert found.uri == uri and found.range.start == types.Position(line=6, character=10)
    (tmp_path / "body.txt").write_text("Hello\n")
    text = (
        'campaign "t" {\n  day 1 {\n'
        '    email a { send choose subject "s" body template "body.txt" }\n  }\n}\n'
    )
    other = await opened(client, tmp_path / "t.campaign", text)
    found = await client.text_document_definition_async(
        types.DefinitionParams(
            text_document=types.TextDocumentIdentifier(uri=other),
            position=types.Position(line=2, character=62),
        )
    )
    assert isinstance(found, types.Location)
    assert found.uri == from_fs_path(str(tmp_path / "body.txt"))


async def completions(client: LanguageClient, uri: str, line: int, character: int) -> list[str]:
    found = await client.text_document_completion_async(
        types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=line, character=character),
        )
    )
    items = found.items if isinstance(found, types.CompletionList) else found or []
    return [item.label for item in items]


@pytest.mark.asyncio
async def test_completion_offers_what_the_grammar_takes_here(
    client: LanguageClient, tmp_path: Path
) -> None:
    text = (
        'campaign "c" {\n  timezone "Europe/Sto"\n  skip holidays "S"\n  requires company\n\n'
        '  day 1 {\n    email intro {\n      send \n      subject "Hi {{ com"\n'
        '      body "{{ sender. }}"\n    }\n    \n  }\n}\n'
    )
    uri = await opened(client, tmp_path / "c.campaign", text)
    assert await completions(client, uri, 7, 11) == [
        "at",
        "choose",
        "task",
        "window",
        "with previous",
    ]
    assert await completions(client, uri, 11, 4) == ["call", "custom", "email", "inmail"]
    assert "Europe/Stockholm" in await completions(client, uri, 1, 22)
    assert "SE" in await completions(client, uri, 2, 18)
    names = await completions(client, uri, 8, 26)
    assert "company" in names and "first_name" in names and "sender" in names
    assert await completions(client, uri, 9, 22) == ["name", "email", "signature"]


def test_a_message_that_is_not_json_is_one_log_line_and_the_server_answers_on() -> None:
    import json
    import subprocess

    def framed(body: bytes) -> bytes:
        return b"Content-Length: %d\r\n\r\n" % len(body) + body

    initialize = json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "initialize",
         "params": {"processId": None, "rootUri": None, "capabilities": {}}}
    ).encode()  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "cadence", "lsp"],
        input=framed(b"{{{{{") + framed(initialize),
        capture_output=True,
        timeout=60,
    )
    assert b'"id": 1' in done.stdout or b'"id":1' in done.stdout  # answered after the garbage
    assert b"Traceback" not in done.stderr
    assert b"cadence lsp: ERROR: Unable to handle message" in done.stderr


def test_hover_tells_an_emails_sending_window() -> None:
    from cadence.compiler import compile_source
    from cadence.describing import describe_step

    source = (
        'campaign "w" {\n  send window 08:00-17:30\n  day 1 {\n'
        '    email a { send at 09:00 subject "s" body "b" }\n'
        '    email b { send task subject "s" body "b" }\n  }\n}\n'
    )
    ir = compile_source(source, "w.campaign").ir
    assert ir is not None
    automatic, task = (describe_step(ir, step) for step in ir.steps)
    assert "Only between 08:00 and 17:30 (its sending window)" in automatic
    assert "sending window" not in task
