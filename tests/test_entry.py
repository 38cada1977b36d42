"""The ``cadence`` program's start-up (cadence.entry): the collector is paused
while the command line is imported and what it imported is frozen, and none of
that touches a process that embeds the library."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
from pathlib import Path

from cadence.gcpause import importing

SMALL = (
    'campaign "Small" {\n  day 1 {\n    email intro {\n      send choose\n'
    '      subject "Hi"\n      body "Hello"\n    }\n  }\n}\n'
)


def _python(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_program_runs_a_command_with_the_collector_on_and_its_start_frozen(
    tmp_path: Path,
) -> None:
    campaign = tmp_path / "small.campaign"
    campaign.write_text(SMALL)
    done = _python(
        """
        import atexit, gc, sys
        atexit.register(lambda: print("gc", gc.isenabled(), gc.get_freeze_count(), file=sys.stderr))
        sys.argv = ["cadence", "check", sys.argv[1]]
        from cadence.entry import main
        main()
        """,
        str(campaign),
    )
    assert done.returncode == 0, done.stderr
    assert "no problems in 1 file" in done.stderr
    enabled, frozen = done.stderr.split("gc ")[1].split()
    assert enabled == "True"
    assert int(frozen) > 10_000  # the command line and the compiler it imported


def test_python_dash_m_cadence_is_the_same_program() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cadence", "--version"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("cadence, version ")


def test_importing_freezes_nothing_in_a_process_that_embeds_the_library() -> None:
    assert gc.get_freeze_count() == 0  # pytest embeds the library; it never froze
    with importing():
        assert not gc.isenabled()
        import cadence.compiler.render_graph  # noqa: F401
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


def test_importing_in_a_process_that_froze_its_start_freezes_what_it_imported() -> None:
    done = _python(
        """
        import gc
        from cadence.gcpause import importing
        gc.freeze()
        before = gc.get_freeze_count()
        with importing():
            import cadence.compiler.render_graph
        print(gc.isenabled(), gc.get_freeze_count() > before)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True"]
