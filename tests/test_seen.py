"""A people file of any size is checked for repeats in bounded memory: past
a threshold, keys move from a set to a packed table of 64-bit fingerprints."""

from __future__ import annotations

import hashlib

from cadence.runtime.seen import Seen


def digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def test_repeats_are_found_before_and_after_the_keys_are_packed() -> None:
    a, b, c, d, e = (digest(name) for name in "abcde")
    seen = Seen(spill=3)
    assert [seen.add(key) for key in (a, b, a)] == [True, True, False]
    assert seen.add(c) and len(seen) == 3  # the third key: packed from here
    assert [seen.add(key) for key in (a, c, d, d)] == [False, False, True, False]
    assert b in seen and e not in seen and len(seen) == 4


def test_the_packed_table_grows_and_keeps_every_key() -> None:
    keys = [digest(str(n)) for n in range(5000)]
    seen = Seen(spill=10)
    assert all(seen.add(key) for key in keys)
    assert not any(seen.add(key) for key in keys) and len(seen) == 5000
    assert all(key in seen for key in keys) and digest("other") not in seen


def test_keys_that_differ_in_their_first_eight_bytes_stay_apart() -> None:
    zero, two = bytes(16), b"\x02" + bytes(15)
    seen = Seen(spill=1)
    assert seen.add(zero) and seen.add(two) and not seen.add(zero) and len(seen) == 2


def test_a_people_file_past_the_threshold_still_has_every_repeat_found() -> None:
    from cadence.runtime.people import PeopleChecker, Person

    checker = PeopleChecker(["email"])
    checker._seen = Seen(spill=1000)  # past the threshold early: the packed table at work
    rows = [Person(n, {"email": f"p{n % 3000}@example.com"}) for n in range(4000)]
    repeats = [n for n, row in enumerate(rows) if checker.problems(row)]
    assert repeats == list(range(3000, 4000))
