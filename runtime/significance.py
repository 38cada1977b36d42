"""Whether variants of an email really differ in how often people reply:
Pearson's chi-squared test of independence on the table of variants by
replied / not replied (for two variants, the same as the two-proportion z
test). Written out here: it is a few lines of arithmetic, the survival
function of the chi-squared distribution having a closed form for whole
degrees of freedom."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

TEST_NAME = "Pearson's chi-squared test of independence (variant × replied)"
LEVEL = 0.05  # significant below this p-value


@dataclass(frozen=True)
class TestResult:
    statistic: float
    df: int
    p_value: float
    note: str | None = None  # why the result should not be trusted, when it should not

    @property
    def significant(self) -> bool:
        return self.note is None and self.p_value < LEVEL


def reply_test(counts: Sequence[tuple[int, int]]) -> TestResult | None:
    """The test over ``(sent, replied)`` of each variant; ``None`` when it
    cannot be computed (fewer than two variants sent, or no reply at all, or
    everyone replied)."""
    rows = [(replied, sent - replied) for sent, replied in counts if sent > 0]
    if len(rows) < 2:
        return None
    columns = [sum(row[0] for row in rows), sum(row[1] for row in rows)]
    total = sum(columns)
    if 0 in columns:
        return None
    statistic = 0.0
    smallest = math.inf
    for row in rows:
        size = row[0] + row[1]
        for observed, column in zip(row, columns, strict=True):
            expected = size * column / total
            smallest = min(smallest, expected)
            statistic += (observed - expected) ** 2 / expected
    df = len(rows) - 1
    note = None
    if smallest < 5:
        note = "too few people yet: an expected count is below 5, where the test is unreliable"
    return TestResult(statistic, df, chi2_survival(statistic, df), note)


def chi2_survival(x: float, df: int) -> float:
    """P(X >= x) for X chi-squared with ``df`` (a whole number >= 1) degrees of freedom."""
    if x <= 0:
        return 1.0
    half = x / 2
    if df % 2 == 0:  # each term in logarithms: large df or x stay finite
        log_half = math.log(half)
        terms = (math.exp(i * log_half - math.lgamma(i + 1) - half) for i in range(df // 2))
        return min(1.0, math.fsum(terms))
    tail = math.erfc(math.sqrt(half))
    # The odd terms: half^(i - 1/2) / Gamma(i + 1/2), in logarithms to stay finite.
    terms = (
        math.exp((i - 0.5) * math.log(half) - math.lgamma(i + 0.5) - half)
        for i in range(1, (df + 1) // 2)
    )
    return min(1.0, tail + math.fsum(terms))
