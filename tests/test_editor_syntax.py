"""The TextMate grammar in editors/vscode colours a campaign as an author
expects: tokenized with a real TextMate engine (babi's, on Oniguruma)."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from babi.highlight import Grammars, highlight_line

from tests.conftest import EXAMPLES, ROOT

SYNTAXES = ROOT / "editors" / "vscode" / "syntaxes"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.campaign"))


@functools.cache
def grammars() -> Grammars:
    """babi finds a grammar by its file name, the scope's: a copy named so."""
    folder = Path(tempfile.mkdtemp(prefix="cadence-grammars-"))
    shutil.copy(SYNTAXES / "campaign.tmLanguage.json", folder / "source.campaign.json")
    return Grammars(str(folder))


def tokens(text: str) -> list[tuple[int, str, tuple[str, ...]]]:
    """(line number, token text, scopes) for every token of ``text``."""
    compiler = grammars().compiler_for_scope("source.campaign")
    state, found = compiler.root_state, []
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        state, regions = highlight_line(compiler, state, line, number == 1)
        found += [(number, line[r.start : r.end], r.scope) for r in regions]
    return [token for token in found if token[1].strip()]  # not the spaces between


def scopes_of(text: str, token: str, line: int | None = None) -> tuple[str, ...]:
    for number, found, scopes in tokens(text):
        if found == token and (line is None or number == line):
            return scopes
    raise AssertionError(f"no token {token!r}")


def test_the_extension_points_at_the_grammar() -> None:
    package = json.loads((ROOT / "editors" / "vscode" / "package.json").read_text())
    grammar = package["contributes"]["grammars"][0]
    assert (ROOT / "editors" / "vscode" / grammar["path"]).is_file()
    assert grammar["scopeName"] == "source.campaign"
    assert package["contributes"]["languages"][0]["extensions"] == [".campaign"]


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_every_example_tokenizes_and_every_string_closes(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    found = tokens(text)
    assert found
    last_line = text.count("\n")
    # The closing brace of the campaign is plain punctuation: nothing was left open.
    assert found[-1][1] == "}" and "string" not in " ".join(found[-1][2])
    assert found[-1][0] == last_line


def test_the_scopes_of_a_campaign() -> None:
    text = (EXAMPLES / "q1-outbound.campaign").read_text(encoding="utf-8")
    comment = scopes_of(text, "# Lines starting with # are comments.")
    assert "comment.line.number-sign.campaign" in comment
    assert "keyword.other.campaign.campaign" in scopes_of(text, "campaign")
    assert "constant.numeric.day.campaign" in scopes_of(text, "3")
    assert "storage.type.step.campaign" in scopes_of(text, "email")
    assert "entity.name.function.step.campaign" in scopes_of(text, "intro")
    assert "keyword.control.send-option.campaign" in scopes_of(text, "with previous")
    assert "constant.numeric.time.campaign" in scopes_of(text, "09:30")
    name = scopes_of(text, "first_name", line=13)
    assert "string.quoted.double.campaign" in name and "variable.other.jinja" in name
    block = scopes_of(text, "company", line=17)
    assert "string.quoted.triple.campaign" in block and "meta.embedded.expression.jinja" in block


def test_a_sending_window_is_a_send_keyword_with_two_times() -> None:
    text = (EXAMPLES / "office-hours.campaign").read_text(encoding="utf-8")
    line = next(n for n, row in enumerate(text.splitlines(), start=1) if "send window" in row)
    assert "keyword.control.send-option.campaign" in scopes_of(text, "window", line=line)
    assert "constant.numeric.time.campaign" in scopes_of(text, "17:30", line=line)


def test_escapes_and_bad_escapes_inside_strings() -> None:
    text = 'campaign "a\\"b\\q" {\n}\n'
    assert "constant.character.escape.campaign" in scopes_of(text, '\\"')
    assert "invalid.illegal.escape.campaign" in scopes_of(text, "\\q")


def test_an_unterminated_string_ends_at_its_line() -> None:
    text = 'campaign "open {\n  day 1 {\n  }\n}\n'
    assert "string.quoted.double.campaign" not in scopes_of(text, "day")


def test_the_extension_starts_the_language_server() -> None:
    folder = ROOT / "editors" / "vscode"
    package = json.loads((folder / "package.json").read_text())
    main = folder / package["main"]
    assert "onLanguage:campaign" in package["activationEvents"]
    assert 'args: ["lsp"]' in main.read_text()
    node = shutil.which("node")
    if node is not None:  # where Node is installed, the script at least parses
        subprocess.run([node, "--check", str(main)], check=True)
