"""One small message cannot stall the inbox: the header and body work of
classifying it is bounded (a Subject of many RFC 2047 encoded words decoded in
quadratic time, a text/html part of `<` characters in a backtracking regex
took 28 s and 15.6 s). The work each step is given is measured here; the time
it takes is benchmarks' business."""

from __future__ import annotations

import email
import email.header
import email.policy
from typing import Any

import pytest

from cadence.runtime import classify as classifying
from cadence.runtime.classify import MAX_SUBJECT, MAX_TEXT, classify


def read(text: str) -> Any:
    return email.message_from_string(text, policy=email.policy.compat32)


def test_a_subject_of_60000_encoded_words_is_decoded_from_its_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[int] = []
    decode = email.header.decode_header

    def measured(value: str) -> Any:
        seen.append(len(value))
        return decode(value)

    monkeypatch.setattr(classifying, "decode_header", measured)
    words = " ".join("=?utf-8?q?a?=" for _ in range(60_000))
    found = classify(read(f"From: ada@example.com\nSubject: =?utf-8?q?Automatic_reply?= {words}"
                          "\n\nI am away."))  # fmt: skip
    assert found.kind == "auto_reply"  # what decides is at the start, and is still read
    assert seen and max(seen) <= MAX_SUBJECT


def test_an_html_part_of_5_mb_of_angle_brackets_is_read_in_a_bounded_slice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[int] = []
    tag = classifying._TAG

    class Measured:
        def sub(self, replacement: str, text: str) -> str:
            seen.append(len(text))
            return tag.sub(replacement, text)

    monkeypatch.setattr(classifying, "_TAG", Measured())
    html = "<p>Please remove me.</p>" + "<" * 5_000_000
    found = classify(read(f"From: ada@example.com\nSubject: hi\nContent-Type: text/html\n\n{html}"))
    assert found.kind == "unsubscribe"
    assert seen and max(seen) <= 4 * (MAX_TEXT + 1)
    assert tag.pattern == "<[^<>]{0,2000}>"  # no `<` inside: each one ends a scan, no backtracking
