"""The grammar accepts the whole language of docs/language.md and builds the typed AST."""

from __future__ import annotations

import pytest

from cadence.grammar import ast, parse_file, parse_text
from tests.conftest import EXAMPLES, example_files


def parse_ok(text: str) -> ast.Campaign:
    result = parse_text(text, "t.campaign")
    assert result.diagnostics == ()
    assert result.campaign is not None
    return result.campaign


def one_step(body: str) -> ast.AnyStep:
    campaign = parse_ok(f'campaign "c" {{ day 1 {{ {body} }} }}')
    return campaign.days[0].steps[0]


def test_spec_example_parses_into_the_ast() -> None:
    result = parse_file(EXAMPLES / "q1-outbound.campaign")
    assert result.ok and result.diagnostics == ()
    campaign = result.campaign
    assert campaign is not None
    assert campaign.name.value == "Q1 Outbound - VP Engineering"

    kinds = [s.kind for s in campaign.settings]
    assert kinds == ["timezone", "skip_weekends", "skip_holidays", "on_reply", "on_bounce",
                     "requires"]  # fmt: skip
    timezone, _, holidays, on_reply, on_bounce, requires = campaign.settings
    assert isinstance(timezone, ast.Timezone)
    assert (timezone.zone.value, timezone.recipient) == ("America/New_York", False)
    assert isinstance(holidays, ast.SkipHolidays) and holidays.country.value == "US"
    assert isinstance(on_reply, ast.OnReply) and on_reply.action == "end"
    assert isinstance(on_bounce, ast.OnBounce) and on_bounce.action == "remove"
    assert isinstance(requires, ast.Requires)
    assert [f.value for f in requires.fields] == ["first_name", "company"]

    assert [d.number for d in campaign.days] == [1, 3, 5, 8]
    steps = [(day.number, step.kind, step.id) for day, step in campaign.steps()]
    assert steps == [
        (1, "email", "intro"),
        (3, "email", "bump"),
        (3, "call", "ring"),
        (5, "inmail", "connect"),
        (5, "custom", "research"),
        (5, "email", "breakup"),
        (8, "email", "personal"),
    ]
    intro = campaign.days[0].steps[0]
    assert isinstance(intro, ast.EmailStep)
    assert isinstance(intro.send, ast.SendChoose)
    assert intro.subject is not None
    assert intro.subject.text.value == "Quick question, {{ first_name }}"
    assert intro.body is not None
    assert intro.body.text.form == "block"
    assert intro.body.text.value == ("Hi {{ first_name }},\n\nHow does {{ company }} handle ...?")

    bump = campaign.days[1].steps[0]
    assert isinstance(bump, ast.EmailStep)
    assert isinstance(bump.send, ast.SendWithPrevious)
    assert bump.follow_up and bump.subject is None
    assert bump.body is not None
    assert (bump.body.text.form, bump.body.text.value) == ("template", "templates/bump.txt.j2")

    breakup = campaign.days[2].steps[2]
    assert isinstance(breakup, ast.EmailStep) and isinstance(breakup.send, ast.SendAt)
    assert (breakup.send.time.hour, breakup.send.time.minute) == (9, 30)
    personal = campaign.days[3].steps[0]
    assert isinstance(personal, ast.EmailStep) and isinstance(personal.send, ast.SendTask)
    assert len(result.comments) == 8


def test_every_node_carries_its_span() -> None:
    result = parse_file(EXAMPLES / "q1-outbound.campaign")
    campaign = result.campaign
    assert campaign is not None
    path = str(EXAMPLES / "q1-outbound.campaign")
    assert campaign.span.model_dump() == {
        "file": path, "line": 2, "column": 1, "end_line": 50, "end_column": 2,
    }  # fmt: skip
    bump = campaign.days[1].steps[0]
    assert (bump.span.line, bump.span.column, bump.span.end_line, bump.span.end_column) == (
        23, 5, 27, 6,
    )  # fmt: skip
    assert (bump.name.span.line, bump.name.span.column, bump.name.span.end_column) == (23, 11, 15)
    day = campaign.days[1]
    assert (day.number_span.line, day.number_span.column) == (22, 7)
    breakup = campaign.days[2].steps[2]
    assert isinstance(breakup, ast.EmailStep) and isinstance(breakup.send, ast.SendAt)
    time = breakup.send.time
    assert (time.span.line, time.span.column, time.span.end_column) == (37, 15, 20)


@pytest.mark.parametrize("path", example_files(), ids=lambda p: p.name)
def test_every_example_parses_clean(path: object) -> None:
    result = parse_file(str(path))
    assert result.ok, result.diagnostics
    assert result.diagnostics == ()


def test_ast_validates_as_json_round_trip() -> None:
    # The transformer builds nodes without validation for speed; prove they are valid.
    campaign = parse_file(EXAMPLES / "q1-outbound.campaign").campaign
    assert campaign is not None
    again = ast.Campaign.model_validate_json(campaign.model_dump_json())
    assert again == campaign


def test_settings_in_every_form() -> None:
    campaign = parse_ok(
        """campaign "c" {
          requires a, b-c, _d
          on bounce continue
          on reply end success
          timezone recipient else "Europe/Stockholm"
          day 1 { }
        }"""
    )
    requires, bounce, reply, tz = campaign.settings
    assert isinstance(requires, ast.Requires)
    assert [f.value for f in requires.fields] == ["a", "b-c", "_d"]
    assert isinstance(bounce, ast.OnBounce) and bounce.action == "continue"
    assert isinstance(reply, ast.OnReply) and reply.action == "end_success"
    assert isinstance(tz, ast.Timezone) and tz.recipient and tz.zone.value == "Europe/Stockholm"


@pytest.mark.parametrize(
    ("text", "action"),
    [("on reply end", "end"), ("on reply end success", "end_success"),
     ("on reply continue", "continue")],
)  # fmt: skip
def test_reply_actions(text: str, action: str) -> None:
    campaign = parse_ok(f'campaign "c" {{ {text} }}')
    setting = campaign.settings[0]
    assert isinstance(setting, ast.OnReply) and setting.action == action


def test_keywords_are_contextual_so_steps_may_be_named_like_keywords() -> None:
    campaign = parse_ok(
        'campaign "c" { day 1 { email day { send at 9:00 } call email { } '
        "custom send { } inmail campaign { } } }"
    )
    assert [s.id for _, s in campaign.steps()] == ["day", "email", "send", "campaign"]


def test_faithful_ast_keeps_repeated_properties_for_the_compiler() -> None:
    step = one_step('email e { send task send choose subject "a" subject "b" follow up }')
    assert isinstance(step, ast.EmailStep)
    assert [i.kind for i in step.items] == [
        "send_task", "send_choose", "subject", "subject", "follow_up",
    ]  # fmt: skip
    assert isinstance(step.send, ast.SendTask)  # the first one
    assert step.subject is not None and step.subject.text.value == "a"


def test_time_of_day_is_read_as_written_and_range_checked_later() -> None:
    step = one_step("email e { send at 7:05 }")
    assert isinstance(step, ast.EmailStep) and isinstance(step.send, ast.SendAt)
    assert str(step.send.time) == "07:05"
    late = one_step("email e { send at 99:99 }")
    assert isinstance(late, ast.EmailStep) and isinstance(late.send, ast.SendAt)
    assert (late.send.time.hour, late.send.time.minute) == (99, 99)


def test_comments_anywhere_are_collected_with_positions() -> None:
    result = parse_text(
        '# head\ncampaign "c" { # open\n  day 1 # after day\n  { email e # x\n { } } }\n# tail',
        "t.campaign",
    )
    assert result.ok
    assert [(c.text, c.span.line, c.span.column) for c in result.comments] == [
        ("# head", 1, 1), ("# open", 2, 16), ("# after day", 3, 9), ("# x", 4, 13),
        ("# tail", 6, 1),
    ]  # fmt: skip


def test_hash_inside_a_string_is_not_a_comment() -> None:
    step = one_step('call c { notes "call #3 # not a comment" }')
    assert isinstance(step, ast.CallStep)
    assert step.items[0].text.value == "call #3 # not a comment"


def test_crlf_line_ends_give_the_same_ast_and_lines() -> None:
    lf = (EXAMPLES / "q1-outbound.campaign").read_text(encoding="utf-8")
    crlf = lf.replace("\n", "\r\n")
    a, b = parse_text(lf, "x"), parse_text(crlf, "x")
    assert b.ok and a.campaign is not None and b.campaign is not None
    assert a.campaign == b.campaign
    assert [c.text for c in a.comments] == [c.text for c in b.comments]


def test_utf8_bom_is_accepted_and_not_counted_as_a_column() -> None:
    result = parse_text('\ufeffcampaign "c" { }', "x")
    assert result.ok and result.campaign is not None
    assert (result.campaign.span.line, result.campaign.span.column) == (1, 1)


def test_non_ascii_text_in_strings() -> None:
    campaign = parse_ok(
        'campaign "Kampanj för Åsa – 日本 🚀" { day 1 { email e { '
        'subject "Hej {{ first_name }} ☕" '
        'body """\n  Grüße\n  ✓ klart\n  """ } } }'
    )
    assert campaign.name.value == "Kampanj för Åsa – 日本 🚀"
    step = campaign.days[0].steps[0]
    assert isinstance(step, ast.EmailStep) and step.body is not None
    assert step.body.text.value == "Grüße\n✓ klart"


def test_string_escapes() -> None:
    step = one_step(r'custom c { title "say \"hi\"\nback\\slash" }')
    assert isinstance(step, ast.CustomStep)
    assert step.items[0].text.value == 'say "hi"\nback\\slash'


def test_block_strings_are_dedented_keeping_inner_lines() -> None:
    step = one_step(
        'email e { body """\n        Hi,\n\n          indented\n        bye\n        """ }'
    )
    assert isinstance(step, ast.EmailStep) and step.body is not None
    assert step.body.text.value == "Hi,\n\n  indented\nbye"


def test_block_string_may_hold_quotes_and_escaped_triple_quotes() -> None:
    step = one_step('email e { body """\n  say "hi" and ""\n  \\"""\n  """ }')
    assert isinstance(step, ast.EmailStep) and step.body is not None
    assert step.body.text.value == 'say "hi" and ""\n"""'


def test_empty_campaign_and_empty_blocks_parse() -> None:
    campaign = parse_ok('campaign "" { day 1 { } }')
    assert campaign.name.value == "" and campaign.days[0].steps == ()
