"""Compile speed: a 5,000-step campaign, end to end (parse, graph, rules,
templates), beside its floor: a bare Lark LALR parse of the same text with the
project's grammar (no positions kept, no tree built beyond Lark's own).

Goals: <= 1 s (issue 3); within 2x of the floor and linear in the steps
(issue 11). Run: ``python benchmarks/compile.py [--steps 5000]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time


def generate(steps: int) -> str:
    """Days of five steps: a follow-up aligned with the day before, a call, an
    email at a time, a custom task and an email at another time."""
    out = [
        'campaign "Compile benchmark" {',
        '  timezone recipient else "Europe/Stockholm"',
        "  skip weekends",
        '  skip holidays "SE"',
        "  requires first_name, company",
        "",
    ]
    n, day = 0, 1
    while n < steps:
        out.append(f"  day {day} {{")
        for slot in range(5):
            n += 1
            out += _step(n, slot, day)
        out += ["  }", ""]
        day += 1
    out.append("}")
    return "\n".join(out) + "\n"


def _step(n: int, slot: int, day: int) -> list[str]:
    if slot == 0 and day == 1:
        send = ["      send choose", '      subject "Hi {{ first_name }}"']
        return [f"    email s{n} {{", *send, '      body "Hello"', "    }"]
    if slot == 0:
        body = [
            '      body """',
            "        Hi {{ first_name }},",
            "",
            "        a note about {{ company }}, from {{ sender.name }}.",
            '        """',
        ]
        return [f"    email s{n} {{", "      send with previous", "      follow up", *body, "    }"]
    if slot in (2, 4):
        time = "09:30" if slot == 2 else "14:00"
        return [
            f"    email s{n} {{",
            f"      send at {time}",
            f'      subject "{{{{ company }}}} #{n}"',
            '      body "Short one."',
            "    }",
        ]
    if slot == 1:
        return [f'    call s{n} {{ notes "Ask {{{{ first_name }}}} about {{{{ company }}}}" }}']
    return [f'    custom s{n} {{ title "Research {{{{ company }}}}" }}']


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    import os

    os.environ.setdefault("CADENCE_CACHE_DIR", tempfile.mkdtemp(prefix="cadence-bench-"))
    from cadence.compiler import compile_source
    from cadence.compiler.ir import dump_ir

    text = generate(args.steps)
    compile_source(text, "bench.campaign")  # warm: parser built, holidays loaded
    times, phases = [], []
    for _ in range(args.repeat):
        start = time.perf_counter()
        result = compile_source(text, "bench.campaign")
        times.append(time.perf_counter() - start)
        assert result.ok and result.ir is not None, result.diagnostics[:3]
        start = time.perf_counter()
        dump_ir(result.ir)
        phases.append(time.perf_counter() - start)
    steps = len(result.ir.steps)
    floor = bare_parse(text, args.repeat)
    median = statistics.median(times)
    print(f"input            {len(text) / 1024:8.0f} KB, {steps} steps")
    print(
        f"compile          {median:8.3f} s median, {min(times):.3f} s best "
        f"({args.repeat} runs; goal <= 1 s for 5,000 steps)"
    )
    print(
        f"bare Lark parse  {floor:8.3f} s median (compile is {median / floor:.2f}x the floor; "
        "goal <= 2x)"
    )
    half = generate(args.steps // 2)
    halves = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        compile_source(half, "bench.campaign")
        halves.append(time.perf_counter() - start)
    print(
        f"linearity        {median / statistics.median(halves):8.2f}x the time for twice the "
        "steps (goal about 2x)"
    )
    print(f"IR to JSON       {statistics.median(phases):8.3f} s median")


def bare_parse(text: str, repeat: int) -> float:
    """Median seconds for Lark alone to parse ``text`` with the grammar."""
    from lark import Lark

    from cadence.grammar.parser import grammar_text

    lark = Lark(grammar_text(), parser="lalr", lexer="contextual", maybe_placeholders=False)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        lark.parse(text)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


if __name__ == "__main__":
    main()
