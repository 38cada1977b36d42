"""Hypothesis strategies: whole campaigns, written in random layouts.

The generator writes source text token by token, independently of the
formatter, with random whitespace, line ends and comments between tokens.
"""

from __future__ import annotations

from hypothesis import strategies as st

names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,6}", fullmatch=True)
SEPARATORS = [" ", " ", "  ", "\n", "\n", "\n\n", "\t", "\r\n", " # note\n", "\n  # own line\n  ",
              "\n\n\n", "   # spaced comment\n\n"]  # fmt: skip

_inline_piece = st.one_of(
    st.text(st.characters(exclude_categories=("Cs", "Cc"), exclude_characters='"\\'), max_size=8),
    st.sampled_from(['\\"', "\\\\", "\\n", "{{ first_name }}", "#", "\t"]),
)
inline_strings = st.lists(_inline_piece, max_size=4).map(lambda parts: '"' + "".join(parts) + '"')

_block_line = st.tuples(
    st.sampled_from(["", "  ", "    ", "\t", "      "]),
    st.text(st.characters(exclude_categories=("Cs", "Cc"), exclude_characters='"\\'), max_size=12),
    st.sampled_from(["", "", ' say "hi"', " \\n", " \\\\"]),
).map("".join)
block_strings = st.tuples(
    st.sampled_from(["", "\n", "  \n"]),
    st.lists(_block_line, max_size=5).map("\n".join),
    st.sampled_from(["", "\n", "\n    "]),
).map(lambda parts: '"""' + _no_quote_at_end("".join(parts)) + '"""')


def _no_quote_at_end(content: str) -> str:
    # A block cannot end in a quote: `""""` closes at its first three quotes.
    return content + "\n" if content.endswith('"') else content


@st.composite
def texts(draw: st.DrawFn) -> list[str]:
    form = draw(st.sampled_from(["inline", "block", "template"]))
    if form == "inline":
        return [draw(inline_strings)]
    if form == "block":
        return [draw(block_strings)]
    return ["template", draw(inline_strings)]


@st.composite
def settings(draw: st.DrawFn) -> list[list[str]]:
    options = [
        ["id", draw(st.sampled_from(['"q1-outbound"', '"a.b_c"', '"bad/id"']))],
        ["timezone", '"Europe/Stockholm"'],
        ["timezone", "recipient", "else", '"UTC"'],
        ["skip", "weekends"],
        ["skip", "holidays", '"SE"'],
        ["on", "reply", draw(st.sampled_from(["end", "end success", "continue"]))],
        ["on", "bounce", draw(st.sampled_from(["remove", "continue"]))],
        ["requires", *",".join(draw(st.lists(names, min_size=1, max_size=3))).replace(",", " , ")
         .split()],
    ]  # fmt: skip
    chosen = draw(st.lists(st.sampled_from(options), max_size=5))
    return [" ".join(setting).split(" ") for setting in chosen]


EMAIL_ITEMS = ["send choose", "send at", "send task", "send with previous", "follow up",
               "subject", "body"]  # fmt: skip


@st.composite
def steps(draw: st.DrawFn) -> list[str]:
    kind = draw(st.sampled_from(["email", "email", "call", "inmail", "custom"]))
    tokens = [kind, draw(names), "{"]
    count = draw(st.integers(0, 4))
    for _ in range(count):
        if kind == "email":
            item = draw(st.sampled_from(EMAIL_ITEMS))
            if item == "send at":
                tokens += [
                    "send",
                    "at",
                    f"{draw(st.integers(0, 29))}:{draw(st.integers(0, 99)):02d}",
                ]
            elif item in ("subject", "body"):
                tokens += [item, *draw(texts())]
            else:
                tokens += item.split()
        else:
            keyword = {"call": "notes", "inmail": "message"}.get(kind) or draw(
                st.sampled_from(["title", "notes"])
            )
            tokens += [keyword, *draw(texts())]
    return [*tokens, "}"]


@st.composite
def campaign_tokens(draw: st.DrawFn) -> list[str]:
    tokens = ["campaign", draw(inline_strings), "{"]
    for setting in draw(settings()):
        tokens += setting
    for number in sorted(draw(st.lists(st.integers(1, 40), max_size=4))):
        tokens += ["day", str(number), "{"]
        for step in draw(st.lists(steps(), max_size=3)):
            tokens += step
        tokens.append("}")
    return [*tokens, "}"]


@st.composite
def campaign_sources(draw: st.DrawFn) -> str:
    tokens = draw(campaign_tokens())
    out = [draw(st.sampled_from(["", "# header\n", "\n# header\n\n"]))]
    for token in tokens:
        out.append(token)
        out.append(draw(st.sampled_from(SEPARATORS)))
    out.append(draw(st.sampled_from(["", "\n", "# tail\n", "\n\n# tail"])))
    return "".join(out)
