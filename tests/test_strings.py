"""String literals: escapes and block dedent, and the formatter's inverse of both."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cadence.grammar.strings import (
    decode_block,
    decode_inline,
    dedent_block,
    encode_block,
    encode_inline,
    find_bad_escapes,
)


def test_dedent_drops_blank_first_and_last_lines_and_the_common_margin() -> None:
    assert dedent_block("\n    a\n      b\n    ") == "a\n  b"


def test_dedent_keeps_inner_blank_lines_as_empty_lines() -> None:
    assert dedent_block("\n  a\n      \n  b\n") == "a\n\nb"


def test_dedent_keeps_text_on_the_opening_line() -> None:
    assert dedent_block("Hello\n  world") == "Hello\n  world"


def test_dedent_does_not_mix_tabs_and_spaces() -> None:
    assert dedent_block("\n\ta\n  b\n") == "\ta\n  b"


def test_dedent_of_empty_blocks() -> None:
    assert dedent_block("") == ""
    assert dedent_block("\n") == ""
    assert dedent_block("\n   \n") == ""


def test_crlf_inside_a_block_reads_as_lf() -> None:
    assert decode_block('"""\r\n  a\r\n  b\r\n  """') == "a\nb"


def test_escapes_apply_after_dedent() -> None:
    # An escaped newline does not start a line of the block, so it is not dedented.
    assert decode_block('"""\n    a\\n  b\n    """') == "a\n  b"


def test_unknown_escapes_are_found_with_their_offsets() -> None:
    bad = find_bad_escapes(r'"a\qb\\c\t"')
    assert [(b.offset, b.sequence) for b in bad] == [(2, "\\q"), (8, "\\t")]


inline_values = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)


@given(inline_values)
def test_inline_strings_round_trip(value: str) -> None:
    assert decode_inline(encode_inline(value)) == value


block_lines = st.lists(
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\r\n"), max_size=12),
    max_size=6,
)


@given(block_lines, st.sampled_from(["", "  ", "\t", "        "]))
def test_block_strings_round_trip_for_every_value_a_block_can_hold(
    lines: list[str], indent: str
) -> None:
    # Values a block can hold are the values decoding a block gives.
    value = decode_block('"""' + "\n".join(lines).replace("\\", "\\\\").replace('"', '\\"') + '"""')
    encoded = "\n".join(encode_block(value, indent))
    assert decode_block(encoded) == value
    assert find_bad_escapes(encoded) == []
