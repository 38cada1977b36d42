"""What a template uses (free names and `sender.*`/`campaign.*` attributes,
each with its first line): texts made only of `{{ name }}` placeholders are
read without Jinja's parser and compiler, and must say exactly what Jinja
says; anything else goes to Jinja."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import cadence.templating as templating
from cadence.templating import Analysis, analyse, environment

ENV = environment()


def by_jinja(template: str) -> object:
    found = templating._analyse_with_jinja(ENV, template)
    return (found.names, found.attributes) if isinstance(found, Analysis) else "error"


NAMES = st.sampled_from(
    ["first_name", "company", "a", "_x", "sender", "campaign", "range", "lipsum", "true",
     "None", "in", "if", "email", "x1"]
)  # fmt: skip
SPACE = st.sampled_from(["", " ", "  ", "\n", " \n "])
PLACEHOLDER = st.builds(
    lambda dash1, s1, name, attribute, s2, dash2: (
        "{{" + dash1 + s1 + name + (f".{attribute}" if attribute else "") + s2 + dash2 + "}}"
    ),
    st.sampled_from(["", "-", "+"]), SPACE, NAMES,
    st.one_of(st.none(), st.sampled_from(["name", "email", "signature", "nope", "b"])),
    SPACE, st.sampled_from(["", "-", "+"]),
)  # fmt: skip
TEXT = st.sampled_from(["Hi ", "\n", "{", "}", "{ ", " }", "é", "{%", "{#", "%}", "-", ", "])
TEMPLATES = st.lists(st.one_of(PLACEHOLDER, TEXT), max_size=8).map("".join)


@given(TEMPLATES)
def test_the_fast_reading_says_what_jinja_says(template: str) -> None:
    fast = templating._simple_analysis(ENV, template)
    if fast is not None:
        assert (fast.names, fast.attributes) == by_jinja(template)
    found = analyse(ENV, template)
    expected = by_jinja(template)
    assert ((found.names, found.attributes) if isinstance(found, Analysis) else "error") == expected


@pytest.mark.parametrize(
    "template",
    ["Hi {{ first_name }}", "{{- company -}}\n{{ sender.email }}", "x\n\n{{\n  campaign.name }}"],
)
def test_plain_placeholders_take_the_fast_reading(template: str) -> None:
    assert templating._simple_analysis(ENV, template) is not None


@pytest.mark.parametrize(
    "template",
    ["{{{ a }}", "{{ a +}}", "{{+ a }}", "{{ true }}", "{{ a.b.c }}", "{{ a. b }}",
     "{{ é }}", "{{ a }}{%", "{{ a }}{# x #}", "{{ if }}", "{{ sender.none }}",
     "Hi {{ a }}\rBye {{ b }}"],
)  # fmt: skip
def test_what_only_looks_plain_goes_to_jinja(template: str) -> None:
    assert templating._simple_analysis(ENV, template) is None
