"""Parsing again after an edit gives exactly what parsing the new text whole
gives, and reuses the untouched days when it can."""

from __future__ import annotations

import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from cadence.grammar import parse_text
from cadence.grammar.incremental import _one_day, reparse
from tests.conftest import EXAMPLES, ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from compile import generate

TEXTS = [path.read_text(encoding="utf-8") for path in sorted(EXAMPLES.glob("*.campaign"))]
TEXTS.append(generate(60))
INSERTS = ["a", " ", '"', "{", "}", "#", "\n", "9", ":", "é", "😀", "\\", "day 9 {", "} day 9 {"]


@st.composite
def edits(draw: st.DrawFn) -> tuple[str, str]:
    before = draw(st.sampled_from(TEXTS))
    at = draw(st.integers(0, len(before)))
    if draw(st.booleans()) and at < len(before):
        after = before[:at] + before[at + 1 :]
    else:
        after = before[:at] + draw(st.sampled_from(INSERTS)) + before[at:]
    return before, after


@settings(max_examples=400, deadline=None)
@given(edit=edits())
def test_reparsing_an_edit_equals_parsing_the_new_text(edit: tuple[str, str]) -> None:
    before, after = edit
    whole = parse_text(after, "c.campaign")
    again = reparse(parse_text(before, "c.campaign"), after, "c.campaign")
    assert again.campaign == whole.campaign
    assert again.comments == whole.comments
    assert again.diagnostics == whole.diagnostics
    assert again.source.text == whole.source.text


def test_an_edit_inside_a_day_reuses_the_other_days() -> None:
    before = generate(60)
    at = before.index('subject "') + len('subject "')
    after = before[:at] + "x" + before[at:]
    reused = _one_day(parse_text(before, "c.campaign"), after, "c.campaign")
    assert reused is not None and reused.campaign == parse_text(after, "c.campaign").campaign
    # A new line moves every later position: parsed whole.
    assert (
        _one_day(parse_text(before, "c.campaign"), after.replace("x", "\n", 1), "c.campaign")
        is None
    )


def test_comments_of_other_days_and_after_the_day_survive_an_edit() -> None:
    for before in (
        # A day starting on the edited day's closing line, with its comment.
        'campaign "c" {\n  day 1 {\n    inmail hi { message "hi" }\n'
        '  } day 2 { # note on day 2\n    call ring { notes "n" }\n  }\n}\n',
        # A comment after the edited day's closing brace, on the edited line.
        'campaign "c" {\n  day 1 { inmail hi { message "hi" } } # after day 1\n'
        '  day 2 {\n    call ring { notes "n" }\n  }\n}\n',
    ):
        at = before.index('"hi"') + 1
        after = before[:at] + "x" + before[at:]
        whole = parse_text(after, "c.campaign")
        again = reparse(parse_text(before, "c.campaign"), after, "c.campaign")
        assert again.comments == whole.comments and again.campaign == whole.campaign
