"""Reading people: CSV or JSON Lines, streamed, each problem with its line."""

from __future__ import annotations

import io

from cadence.runtime.people import PeopleChecker, Person, RowProblem, format_of, read_people


def read(text: str, format: str | None = None) -> list[Person | RowProblem]:
    return list(read_people(io.StringIO(text), format))  # type: ignore[arg-type]


def test_format_by_extension() -> None:
    assert format_of("a.csv") == "csv"
    assert format_of("a.JSONL") == "jsonl" and format_of("a.ndjson") == "jsonl"
    assert format_of("a.txt") is None


def test_csv_rows_with_their_line_numbers() -> None:
    rows = read("email, first_name\na@example.com,Ada\n\nb@example.com,Bo\n", "csv")
    assert [(r.line, dict(r.fields)) for r in rows if isinstance(r, Person)] == [
        (2, {"email": "a@example.com", "first_name": "Ada"}),
        (4, {"email": "b@example.com", "first_name": "Bo"}),
    ]


def test_jsonl_bad_lines_are_problems_and_the_rest_goes_on() -> None:
    rows = read('{"email": "a@example.com"}\nnot json\n[1]\n\n{"email": "b@example.com"}\n')
    assert [(r.line, type(r).__name__) for r in rows] == [
        (1, "Person"), (2, "RowProblem"), (3, "RowProblem"), (5, "Person"),
    ]  # fmt: skip


def test_jsonl_values_read_as_the_standard_reader_reads_them() -> None:
    # orjson reads most lines; numbers, NaN and unpaired surrogates are the
    # standard reader's, and its messages are the ones people see.
    lines = [
        '{"email": "a@example.com", "id": 123456789012345678901234567890, "score": 1.5}',
        '{"email": "b@example.com", "name": "\\ud800"}',
        '{"email": "c@example.com", "n": NaN}',
        '{"email": "d@example.com",}',
        '{"email": "e@example.com", "tags": ["x"]}',
        '{"email": "f@example.com", "name": "Zoë", "ok": true, "none": null, "n": 7}',
    ]
    rows = read("\n".join(lines) + "\n")
    first, surrogate, nan, comma, nested, plain = rows
    assert isinstance(first, Person) and first.fields["id"] == 123456789012345678901234567890
    assert isinstance(surrogate, RowProblem) and "unpaired surrogate" in surrogate.message
    assert isinstance(nan, Person) and nan.fields["n"] != nan.fields["n"]
    assert isinstance(comma, RowProblem) and comma.message.startswith("not JSON: ")
    assert isinstance(nested, RowProblem) and "field `tags` is a list" in nested.message
    assert isinstance(plain, Person) and plain.fields == {
        "email": "f@example.com", "name": "Zoë", "ok": True, "none": None, "n": 7,
    }  # fmt: skip


def test_sniffing_picks_jsonl_or_csv_and_keeps_line_numbers() -> None:
    assert isinstance(read('\n\n{"email": "a@example.com"}\n')[0], Person)
    assert read('\n\n{"email": "a@example.com"}\n')[0].line == 3
    rows = read("email\na@example.com\n")
    assert isinstance(rows[0], Person) and rows[0].fields == {"email": "a@example.com"}


def test_checker_finds_each_problem() -> None:
    checker = PeopleChecker(["email", "company"])
    ok = Person(1, {"email": "A@Example.com", "company": "X"})
    assert checker.problems(ok) == []
    assert checker.problems(Person(2, {"email": "a@example.com", "company": "Y"})) == [
        "`a@example.com` is listed twice"
    ]
    assert checker.problems(Person(3, {"email": " ", "company": "Y"})) == ["no email"]
    assert checker.problems(Person(4, {"email": "x@y", "company": "Y"})) == [
        "`x@y` is not an email address: The part after the @-sign is not valid. "
        "It should have a period."
    ]
    assert checker.problems(Person(5, {"email": "c@example.com", "company": ""})) == [
        "missing field `company`"
    ]
    # A refused row does not count as seen: fixing it and listing it again works.
    assert checker.problems(Person(6, {"email": "c@example.com", "company": "Z"})) == []
