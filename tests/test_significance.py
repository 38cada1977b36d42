"""The reply-rate test between variants, checked against values from the
chi-squared tables (and scipy.stats.chi2_contingency without correction)."""

from __future__ import annotations

import math

import pytest

from cadence.runtime.significance import chi2_survival, reply_test


@pytest.mark.parametrize(
    ("x", "df", "p"),
    [
        (3.841459, 1, 0.05),
        (5.991465, 2, 0.05),
        (7.814728, 3, 0.05),
        (9.487729, 4, 0.05),
        (11.070498, 5, 0.05),
        (6.634897, 1, 0.01),
        (15.086272, 5, 0.01),
        (0.0, 3, 1.0),
    ],
)
def test_the_survival_function_matches_the_tables(x: float, df: int, p: float) -> None:
    assert math.isclose(chi2_survival(x, df), p, rel_tol=1e-5)


def test_two_variants_10_and_20_replies_of_100_differ_at_5_percent() -> None:
    result = reply_test([(100, 10), (100, 20)])
    assert result is not None
    assert math.isclose(result.statistic, 3.9215686, rel_tol=1e-6)
    assert result.df == 1 and math.isclose(result.p_value, 0.0476704, rel_tol=1e-4)
    assert result.significant


def test_three_equal_variants_do_not_differ() -> None:
    result = reply_test([(300, 30), (300, 31), (300, 29)])
    assert result is not None and result.df == 2 and not result.significant
    assert result.p_value > 0.9


def test_too_few_people_say_so_and_none_is_no_test() -> None:
    small = reply_test([(10, 1), (10, 4)])
    assert small is not None and small.note is not None and not small.significant
    assert reply_test([(100, 0), (100, 0)]) is None  # nobody replied yet
    assert reply_test([(100, 5)]) is None  # one variant: nothing to compare
    assert reply_test([(100, 5), (0, 0)]) is None


def test_many_variants_and_huge_statistics_stay_finite() -> None:
    assert 0.0 <= chi2_survival(400, 400) <= 1.0
    assert chi2_survival(1e6, 3) == 0.0 and chi2_survival(1e6, 4) == 0.0
    result = reply_test([(20, n % 7) for n in range(301)])
    assert result is not None and 0.0 <= result.p_value <= 1.0
