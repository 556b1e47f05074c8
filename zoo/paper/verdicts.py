"""Seed statistics, and the rule that turns one of the paper's claims into a verdict.

A claim compares runs by a metric measured once per seed (a top-1 error in
percent, lower is better). With 3 seeds a side, the normal quantiles of a
"2 standard errors" rule call a difference more than 10% of the time when
there is none, so every verdict here is a Student t test with its own degrees
of freedom, and a report's verdicts are corrected together by Holm's method.

How a report uses it:

1. Per claim, the raw test: :func:`better`, :func:`similar`, :func:`near` or
   :func:`at_most`. A side is the metric's per-seed values: a ``{seed: value}``
   mapping, or a sequence. ``paired=True`` (for :func:`better` and
   :func:`similar`) pairs the two sides by seed: mappings on the seeds both
   sides ran, sequences position by position (equal lengths, the same seed
   order; prefer mappings, which a missing run cannot misalign). Pair whenever
   both sides ran the same seeds: runs of one seed share the data order, the
   validation split and the initialisation's random stream, and the paired
   test is valid whether or not that correlates them. Unpaired: Welch.
2. Per report, :func:`decide` on every raw verdict of the report (the family
   is one report: all its experiments and recipes). It sets each verdict's
   Holm-adjusted p-value, on which its :attr:`Verdict.outcome` is then decided.
3. Before the runs, the power plan: :func:`mde`, :func:`power` and :func:`seeds_needed` on a seed standard
   deviation pooled from earlier runs, by the same approximation the MDE of a verdict uses.

The t distribution is computed here (the regularised incomplete beta function
by its continued fraction), so the module needs only the standard library.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

__all__ = [
    "ALPHA", "POWER", "RULE", "Summary", "Values", "Verdict", "all_of", "at_most", "better", "decide", "gap", "holm",
    "mde", "near", "power", "seeds_needed", "similar", "summarize", "t_cdf", "t_pdf", "t_ppf", "tail",
]

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
ALPHA = 0.05  # each test's level; Holm keeps the report's family-wise error rate at ALPHA
POWER = 0.8  # the power the minimum detectable effect is quoted at
RULE = (
    "Each claim is a Student t test on the per-seed values of its metric, at alpha = 0.05. d is the mean "
    "difference a - b (or a - the paper's value, or (a - b) - the paper's gap; errors, so d < 0 favours a), shown "
    "with the t interval its decision rests on: two-sided 95% for \"beats\", 90% for TOST and the one-sided tests "
    "(each one-sided test at 0.05 is one end of the 90% interval). Two runs trained on the same seeds are paired by seed and tested on the per-seed differences "
    "(paired t, df = n - 1); other pairs of runs by Welch's t test (Welch-Satterthwaite df); a claim about the "
    "paper's number by a one-sample t test (df = n - 1). \"A beats B\": two-sided test of d = 0, supported when "
    "significant with d < 0, contradicted when significant with d > 0. \"A and B are similar\" and \"A is near "
    "v\", within a margin m stated with each claim: equivalence by two one-sided tests (TOST: p is the larger "
    "p-value of the tests of d > -m and of d < m), supported when significant (the 90% interval lies inside "
    "±m), contradicted when d > m or d < -m is significant by its one-sided test; \"A differs from B by g\" is the same TOST on (a - b) - g. \"A beats each of B, C, ...\" (or \"each of "
    "B, C, ... beats A\") is an intersection-union test: supported when every pairwise test is supported, with p the "
    "largest of their p-values; contradicted when one is contradicted, its p-value multiplied by the number of pairs "
    "(Bonferroni). \"A is at most v\": one-sided "
    "one-sample tests, supported when the mean is significantly below v, contradicted when significantly above. "
    "The p-values of all the claims in this report form one family, adjusted by Holm's step-down method; each "
    "outcome is decided on its adjusted p-value (Holm p <= 0.05). A side with fewer than 2 seeds is "
    "inconclusive, and so is a metric missing in a run (NaN) and a difference that does not vary across seeds "
    "(standard error 0: the noise is not measured, so no test is possible). MDE, the smallest difference the test "
    "detects with 80% power at this n, is (t(1 - alpha/2, df) + t(0.8, df)) x se for \"beats\" and "
    "(t(1 - alpha, df) + t(0.8, df)) x se for the one-sided tests and TOST (for TOST: how far inside the margin d "
    "must lie), at the unadjusted alpha; it is given twice, with the observed se and with the se a seed standard "
    "deviation pooled from earlier runs gives at this n (observed standard errors on 2 degrees of freedom vary "
    "several-fold). The power plan inverts the same formula: the seeds a design needs for the paper's effect, "
    "with 80% power, at the pooled standard deviation."
)

Values = Sequence[float] | Mapping[int, float]  # one metric, one value per seed ({seed: value}, or in seed order)


# --------------------------------------------------------------------------- summaries for the tables

@dataclass(frozen=True)
class Summary:
    """One metric over seeds."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else math.nan

    @property
    def sd(self) -> float:
        return statistics.stdev(self.values) if self.n >= 2 else math.nan

    @property
    def se(self) -> float:
        return self.sd / math.sqrt(self.n) if self.n >= 2 else math.nan

    def __str__(self) -> str:
        if not self.values:
            return "not run"
        return f"{self.mean:.2f}" if self.n == 1 else f"{self.mean:.2f} ± {self.sd:.2f}"


def summarize(values: Sequence[float]) -> Summary:
    return Summary(tuple(float(v) for v in values))


# --------------------------------------------------------------------------- Student's t distribution

def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b), by the modified Lentz method (Numerical Recipes 6.4)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        for coef in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                     -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + coef * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + coef / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            return h
    raise ArithmeticError(f"incomplete beta fraction did not converge (a={a}, b={b}, x={x})")


def _incomplete_beta(a: float, b: float, x: float, y: float) -> float:
    """The regularised incomplete beta function I_x(a, b), for a, b > 0, 0 <= x <= 1 and y = 1 - x.

    Both x and y are given, each computed without cancellation, so I stays precise near either end.
    """
    if x <= 0.0 or y <= 0.0:
        return 0.0 if x <= 0.0 else 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(y)
    if x < (a + 1.0) / (a + b + 2.0):  # the fraction converges fast here; use the symmetry elsewhere
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, y) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` > 0 degrees of freedom (any real df)."""
    if math.isnan(t) or math.isinf(t):
        return t if math.isnan(t) else float(t > 0)
    x, y = df / (df + t * t), t * t / (df + t * t)
    tail = 0.5 * _incomplete_beta(df / 2.0, 0.5, x, y)  # P(T > |t|), without cancellation
    return 1.0 - tail if t > 0 else tail


def t_pdf(t: float, df: float) -> float:
    """The density of Student's t with ``df`` degrees of freedom."""
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    return math.exp(log_norm - (df + 1) / 2 * math.log1p(t * t / df))


@lru_cache(maxsize=1024)
def t_ppf(q: float, df: float) -> float:
    """The quantile: t with P(T <= t) = q, by Newton's method kept inside a bisection bracket.

    It solves P(T <= -x) = min(q, 1 - q) for x >= 0, so tails far below 1e-8 keep their precision.
    """
    if not 0.0 < q < 1.0:
        raise ValueError(f"t_ppf needs 0 < q < 1, got {q}")
    tail = min(q, 1.0 - q)
    if tail == 0.5:
        return 0.0
    lo, hi = 0.0, 1.0
    while t_cdf(-hi, df) > tail:
        lo, hi = hi, 2.0 * hi
    x = 0.5 * (lo + hi)
    while hi - lo > 1e-13 * hi:
        excess = t_cdf(-x, df) - tail  # > 0: x is too small
        lo, hi = (x, hi) if excess > 0 else (lo, x)
        step = x + excess / t_pdf(x, df)
        if abs(step - x) <= 1e-13 * x:
            x = step
            break
        x = step if lo < step < hi else 0.5 * (lo + hi)
    return x if q > 0.5 else -x


# --------------------------------------------------------------------------- estimates of the effect

@dataclass(frozen=True)
class _Estimate:
    """The effect d (a - b or a - value), its standard error and degrees of freedom."""

    design: str  # "paired", "Welch" or "one-sample"
    n: tuple[int, ...]
    effect: float
    se: float
    df: float
    scale: float  # the data's magnitude: a standard error below 1e-9 of it is rounding, i.e. zero

    def untestable(self) -> str:
        """Why no test is possible ("" when one is)."""
        if min(self.n) < 2:
            return f"n={min(self.n)}"
        if math.isnan(self.effect):
            return "metric missing (NaN)"
        if not self.se > 1e-9 * self.scale:
            return "no spread across seeds: se 0, the noise is not measured"
        return ""

    def below(self, bound: float) -> float:
        """The p-value of H0: d >= bound against d < bound (nan when untestable)."""
        return math.nan if self.untestable() else t_cdf((self.effect - bound) / self.se, self.df)

    def above(self, bound: float) -> float:
        """The p-value of H0: d <= bound against d > bound (nan when untestable)."""
        return math.nan if self.untestable() else t_cdf((bound - self.effect) / self.se, self.df)


def _floats(side: Values) -> tuple[float, ...]:
    return tuple(float(v) for v in (side.values() if isinstance(side, Mapping) else side))


def _mean(xs: Sequence[float]) -> float:
    return statistics.fmean(xs) if xs else math.nan


def _var_of_mean(xs: Sequence[float]) -> float:
    return statistics.variance(xs) / len(xs) if len(xs) >= 2 else math.nan


def _scale(*sides: Sequence[float]) -> float:
    return max([1.0, *(abs(x) for side in sides for x in side)])


def _differences(a: Values, b: Values) -> tuple[float, ...]:
    """a - b seed by seed: on the seeds both mappings hold, or position by position for sequences."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return tuple(float(a[s]) - float(b[s]) for s in a if s in b)
    if isinstance(a, Mapping) or isinstance(b, Mapping) or len(a) != len(b):
        raise ValueError("paired sides are two {seed: value} mappings, or two sequences of one length in seed order")
    return tuple(float(x) - float(y) for x, y in zip(a, b))


def _paired(a: Values, b: Values) -> _Estimate:
    d = _differences(a, b)
    se = math.sqrt(_var_of_mean(d))
    return _Estimate("paired", (len(d), len(d)), _mean(d), se, len(d) - 1, _scale(_floats(a), _floats(b)))


def _welch(a: Values, b: Values) -> _Estimate:
    xa, xb = _floats(a), _floats(b)
    va, vb = _var_of_mean(xa), _var_of_mean(xb)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(xa) - 1) + vb**2 / (len(xb) - 1)) if se > 0 else math.nan
    return _Estimate("Welch", (len(xa), len(xb)), _mean(xa) - _mean(xb), se, df, _scale(xa, xb))


def _one_sample(a: Values, value: float) -> _Estimate:
    xa = _floats(a)
    se = math.sqrt(_var_of_mean(xa))
    return _Estimate("one-sample", (len(xa),), _mean(xa) - value, se, len(xa) - 1, _scale(xa, [value]))


def _two_sample(a: Values, b: Values, paired: bool) -> _Estimate:
    return _paired(a, b) if paired else _welch(a, b)


# --------------------------------------------------------------------------- verdicts

def _num(x: float) -> str:
    return f"{x:.2f}".replace("-", "−")


def _p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"= {p:.3g}"


@dataclass(frozen=True)
class Verdict:
    """One claim's test. ``outcome`` is decided on ``p_holm`` once :func:`decide` has set it, on ``p`` before.

    ``n`` is the number of seeds per side (a paired test's pairs, on each side); ``effect`` is d = a - b
    (or a - value), ``ci`` its t interval at ``level`` (0.95 for a two-sided test, 0.90 for one-sided tests and
    TOST: the interval the decision rests on); ``mde`` the smallest |d| (for TOST: distance
    inside the margin) detectable with 80% power at this n (see :data:`RULE`). ``lean`` is the outcome
    the data point to, taken when the p-value is at most ALPHA. A claim that cannot be tested (``note``
    says why: "n=1", no spread) has p = nan, is left out of Holm's family and is always inconclusive.
    """

    kind: str
    test: str
    n: tuple[int, ...]
    df: float
    effect: float
    ci: tuple[float, float]
    p: float
    mde: float
    lean: str
    margin: float | None = None
    p_holm: float | None = None
    note: str = ""
    level: float = 1 - ALPHA

    @property
    def outcome(self) -> str:
        """Exactly "supported", "contradicted" or "inconclusive"."""
        p = self.p if self.p_holm is None else self.p_holm
        return self.lean if p <= ALPHA else INCONCLUSIVE  # a nan p compares False: inconclusive

    def __str__(self) -> str:
        """One line for a markdown table cell."""
        if math.isnan(self.p):
            effect = "" if math.isnan(self.effect) else f", d = {_num(self.effect)}"
            return f"{self.outcome} ({self.note}; {self.test}{effect})"
        margin = "" if self.margin is None else f", margin ±{self.margin:.2f}"
        holm = "not Holm-adjusted" if self.p_holm is None else f"Holm p {_p(self.p_holm)}"
        return (f"{self.outcome} ({self.test}, n = {'/'.join(map(str, self.n))}, d = {_num(self.effect)} "
                f"{self.interval()}{margin}, p {_p(self.p)}, {holm}, MDE {self.mde:.2f})")

    def interval(self) -> str:
        """The interval the decision rests on, with its level: "[-0.22, 0.88] (90%)"."""
        return f"[{_num(self.ci[0])}, {_num(self.ci[1])}] ({self.level:.0%})"


def _verdict(kind: str, est: _Estimate, tail: float, p_support: float, p_contra: float,
             margin: float | None = None) -> Verdict:
    """The verdict of one-sided tests at level ``tail`` each, for the claim and against it (TOST with a margin).

    The claim's p-value is the smaller of the two (at most one can be significant); ``tail`` is
    ALPHA / 2 for a two-sided test, ALPHA for one-sided ones and TOST.
    """
    name = f"{est.design} t" if margin is None else f"TOST {est.design}"
    if why := est.untestable():
        return Verdict(kind, name, est.n, math.nan, est.effect, (math.nan, math.nan), math.nan, math.nan,
                       INCONCLUSIVE, margin, note=why)
    half = t_ppf(1 - tail, est.df) * est.se  # the interval whose ends are the tests at level ``tail``
    mde = (t_ppf(1 - tail, est.df) + t_ppf(POWER, est.df)) * est.se
    lean = SUPPORTED if p_support <= p_contra else CONTRADICTED
    return Verdict(kind, name, est.n, est.df, est.effect, (est.effect - half, est.effect + half),
                   min(p_support, p_contra), mde, lean, margin, level=1 - 2 * tail)


def better(a: Values, b: Values, *, paired: bool = False) -> Verdict:
    """Verdict on "a has a lower error than b": two-sided test of d = 0.

    d = mean(a - b) over the seeds both ran (``paired``), or mean(a) - mean(b) (Welch).
    """
    est = _two_sample(a, b, paired)
    return _verdict("better", est, ALPHA / 2, 2 * est.below(0.0), 2 * est.above(0.0))


def _tost(kind: str, est: _Estimate, margin: float) -> Verdict:
    """Equivalence within ±margin: H0 d <= -margin and H0 d >= margin both rejected; contradicted: |d| > margin."""
    if not margin > 0:
        raise ValueError(f"a {kind} claim needs a margin > 0, got {margin}")
    p_equivalent = max(est.above(-margin), est.below(margin))
    p_outside = min(est.below(-margin), est.above(margin))
    return _verdict(kind, est, ALPHA, p_equivalent, p_outside, margin)


def similar(a: Values, b: Values, margin: float, *, paired: bool = False) -> Verdict:
    """Verdict on "a and b are within ``margin`` points of each other": TOST on d (paired or Welch)."""
    return _tost("similar", _two_sample(a, b, paired), margin)


def near(a: Values, value: float, margin: float) -> Verdict:
    """Verdict on "a is within ``margin`` points of the paper's ``value``": one-sample TOST on d = mean(a) - value."""
    return _tost("near", _one_sample(a, value), margin)


def gap(a: Values, b: Values, value: float, margin: float, *, paired: bool = False) -> Verdict:
    """Verdict on "a - b is within ``margin`` points of the paper's gap ``value``": TOST on d = (a - b) - value."""
    est = _two_sample(a, b, paired)
    return _tost("gap", replace(est, effect=est.effect - value), margin)


def all_of(pairwise: Sequence[Verdict]) -> Verdict:
    """One verdict on "every one of these comparisons holds" (an intersection-union test).

    Supported when every pairwise verdict leans supported, with the largest p-value; contradicted when one
    leans contradicted, with the smallest such p-value times the number of pairs (Bonferroni); a pair that
    cannot be tested makes the whole untestable. Effect, interval and MDE are the deciding pair's.
    """
    if untested := [v for v in pairwise if math.isnan(v.p)]:
        return untested[0]
    against = [v for v in pairwise if v.lean == CONTRADICTED]
    if against:
        worst = min(against, key=lambda v: v.p)
        p = min(1.0, len(pairwise) * worst.p)
    else:
        worst = max(pairwise, key=lambda v: v.p)
        p = worst.p
    return replace(worst, test=f"{worst.test}, {len(pairwise)} pairs", p=p)


def at_most(a: Values, value: float) -> Verdict:
    """Verdict on "a's error is at most ``value``": one-sided one-sample tests, below value (supported) or above it."""
    est = _one_sample(a, value)
    return _verdict("at_most", est, ALPHA, est.below(0.0), est.above(0.0))


# --------------------------------------------------------------------------- one report's family of claims

def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order: step-down, monotone, capped at 1.

    A nan (a claim that could not be tested) stays nan and is not counted in the family.
    """
    order = sorted((i for i, p in enumerate(p_values) if not math.isnan(p)), key=lambda i: p_values[i])
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def decide(verdicts: Sequence[Verdict]) -> list[Verdict]:
    """The verdicts of one report's claims (the family), with Holm-adjusted p-values that decide their outcomes."""
    return [replace(v, p_holm=q) for v, q in zip(verdicts, holm([v.p for v in verdicts]))]


# --------------------------------------------------------------------------- the power plan, before the runs

def tail(kind: str) -> float:
    """The level of each one-sided test a verdict of ``kind`` makes: ALPHA / 2 for "better" (two-sided), ALPHA else."""
    return ALPHA / 2 if kind == "better" else ALPHA


def mde(sd: float, n: int, kind: str) -> float:
    """The smallest effect a test of ``kind`` detects with 80% power at ``n`` seeds, on a per-seed quantity (a
    paired difference, or one run's value) of standard deviation ``sd``; df = n - 1. For TOST: how far inside the
    margin the true difference must lie. Infinite below 2 seeds."""
    if n < 2:
        return math.inf
    return (t_ppf(1 - tail(kind), n - 1) + t_ppf(POWER, n - 1)) * sd / math.sqrt(n)


def power(effect: float, sd: float, n: int, kind: str) -> float:
    """The approximate power of a test of ``kind`` at ``n`` seeds for a true ``effect`` (for TOST: the distance
    inside the margin), the inverse of :func:`mde`: P(T(n - 1) <= |effect| / se - t(1 - tail, n - 1)). Near 80%
    it is within 0.03 of the exact noncentral t from 5 seeds up; far below 80% it understates the power."""
    if n < 2:
        return 0.0
    return t_cdf(abs(effect) * math.sqrt(n) / sd - t_ppf(1 - tail(kind), n - 1), n - 1)


def seeds_needed(effect: float, sd: float, kind: str, most: int = 1000) -> int | None:
    """The fewest seeds (per side) whose :func:`mde` is at most |``effect``|; None beyond ``most`` or for no effect."""
    if not abs(effect) > 0 or mde(sd, most, kind) > abs(effect):
        return None
    lo, hi = 1, most  # mde falls as n grows: mde(lo) > |effect| >= mde(hi); bisect instead of trying every n
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if mde(sd, mid, kind) <= abs(effect) else (mid, hi)
    return hi
