"""How surprising a count is against a key's history, under Poisson noise: the one-sided
conditional test of two Poisson rates (today's window against the history windows), which also
accounts for the history being only a few samples. Floats are fine here: these are counts."""

from __future__ import annotations

import math
from functools import lru_cache

_EPS = 1e-15
_TINY = 1e-300


def _beta_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    return h


def regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def surge_p_value(observed: int, history_total: float, history_windows: int) -> float:
    """P(at least `observed` in today's window | the key's rate equals its history rate).

    Today's count X and the history total Y (over `history_windows` windows of the same
    length) are Poisson; given X + Y, X is binomial with p = 1 / (history_windows + 1), so the
    p-value is the binomial upper tail, I_p(observed, history_total + 1) for a real total.
    """
    if observed <= 0:
        return 1.0
    share = 1.0 / (history_windows + 1)
    return regularized_beta(float(observed), max(history_total, 0.0) + 1.0, share)


@lru_cache(maxsize=1 << 16)
def significant_count(history_total: float, history_windows: int, alpha: float,
                      start: int = 1) -> int:
    """The smallest count >= `start` whose p-value is at most `alpha` (memoised: history
    totals are medians of counts, so the same few arguments recur)."""
    count = max(start, 1)
    if surge_p_value(count, history_total, history_windows) <= alpha:
        return count
    # the mean plus a generous normal margin bounds the answer; search up to it by bisection
    rate = history_total / history_windows if history_windows else 0.0
    high = max(count + 1, int(rate + 12 * math.sqrt(rate + 1) + 40))
    while surge_p_value(high, history_total, history_windows) > alpha:
        high *= 2
    low = count  # p(low) > alpha >= p(high)
    while high - low > 1:
        middle = (low + high) // 2
        if surge_p_value(middle, history_total, history_windows) <= alpha:
            high = middle
        else:
            low = middle
    return high
