"""Optimal split of one order across constant-product paths.

A constant-product hop with fee ``g = 1 - fee`` pays ``y = g*R_out*x / (R_in + g*x)``; written
as ``y = p*x / (1 + q*x)`` with ``p = g*R_out/R_in`` (the marginal price at zero size) and
``q = g/R_in``. Such maps compose into the same form (``p = p1*p2``, ``q = q1 + q2*p1``), so a
multi-hop path is one curve too. Its marginal output is ``p / (1 + q*x)^2``.

Selling ``X`` across pool-disjoint paths is a concave maximisation whose optimum equalises the
marginal prices of every path that gets a share (Angeris et al., "Optimal Routing for Constant
Function Market Makers"): for a multiplier ``lam`` each active path takes
``x_i = (sqrt(p_i/lam) - 1) / q_i``, and ``sum x_i = X`` gives ``lam`` in closed form over the
active set (the paths with ``p_i > lam``, found by water-filling from the best price down).

The solve is in floats; the result is turned into integers that sum exactly to ``X`` and every
output the router reports is then computed with the venues' exact integer math.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

PPM = 1_000_000


@dataclass(frozen=True, slots=True)
class CpCurve:
    """``y = p*x / (1 + q*x)``: the output of a constant-product path for input ``x``."""

    p: float
    q: float

    @classmethod
    def from_hops(cls, hops: Sequence[tuple[int, int]], fees_ppm: Sequence[int]) -> CpCurve:
        """The path through pools with reserves ``(in, out)`` and LP fees, in trade order."""
        if not hops or len(hops) != len(fees_ppm):
            raise ValueError(f"{len(hops)} hops and {len(fees_ppm)} fees")
        p, q = 1.0, 0.0
        for (reserve_in, reserve_out), fee in zip(hops, fees_ppm, strict=True):
            if reserve_in <= 0 or reserve_out <= 0:
                raise ValueError("a pool on the path is empty")
            g = (PPM - fee) / PPM
            hop_p, hop_q = g * reserve_out / reserve_in, g / reserve_in
            p, q = p * hop_p, q + hop_q * p
        return cls(p, q)

    def amount_out(self, x: float) -> float:
        return self.p * x / (1.0 + self.q * x) if x > 0 else 0.0

    def marginal(self, x: float) -> float:
        return self.p / (1.0 + self.q * x) ** 2

    def demand(self, lam: float) -> float:
        """The input at which the marginal price falls to ``lam``."""
        if lam <= 0:
            return math.inf
        if self.p <= lam:
            return 0.0
        return (math.sqrt(self.p / lam) - 1.0) / self.q


def optimal_split_real(curves: Sequence[CpCurve], amount_in: float) -> list[float]:
    """The real-valued optimum: equal marginal prices on every path that gets a share."""
    if amount_in <= 0:
        raise ValueError("amount_in must be > 0")
    if not curves:
        raise ValueError("no curves to split across")
    order = sorted(range(len(curves)), key=lambda i: curves[i].p, reverse=True)
    best: list[float] = [0.0] * len(curves)
    sum_inv_q = 0.0
    sum_root = 0.0
    for k, i in enumerate(order):
        c = curves[i]
        sum_inv_q += 1.0 / c.q
        sum_root += math.sqrt(c.p) / c.q
        scale = (amount_in + sum_inv_q) / sum_root  # = 1/sqrt(lam)
        # Every member of the active set must take a positive share ...
        if math.sqrt(c.p) * scale <= 1.0:
            break
        allocation = [0.0] * len(curves)
        for j in order[: k + 1]:
            cj = curves[j]
            allocation[j] = (math.sqrt(cj.p) * scale - 1.0) / cj.q
        best = allocation
        # ... and the next path must not be worth adding at this marginal price.
        if k + 1 < len(order) and math.sqrt(curves[order[k + 1]].p) * scale <= 1.0:
            break
    if not any(best):
        best[order[0]] = amount_in
    return best


def to_integers(shares: Sequence[float], amount_in: int) -> list[int]:
    """Integer amounts proportional to ``shares`` that sum exactly to ``amount_in``.

    Each share is truncated to an int; what truncation (and float rounding, for amounts above
    2**53) leaves over goes to the largest share, so the sum is exact.
    """
    if amount_in <= 0:
        raise ValueError("amount_in must be > 0")
    clean = [s if s > 0 and math.isfinite(s) else 0.0 for s in shares]
    total = sum(clean)
    if total <= 0:
        raise ValueError("no positive share")
    ints = [int(s / total * amount_in) for s in clean]
    largest = max(range(len(clean)), key=lambda i: clean[i])
    ints[largest] += amount_in - sum(ints)
    if ints[largest] < 0:  # cannot happen unless the shares are absurd; stay exact anyway
        ints = [0] * len(clean)
        ints[largest] = amount_in
    return ints


def optimal_split(curves: Sequence[CpCurve], amount_in: int) -> list[int]:
    """Integer amounts per curve (zeros for paths not worth using), summing to ``amount_in``."""
    if not isinstance(amount_in, int) or amount_in <= 0:
        raise ValueError("amount_in must be a positive int")
    return to_integers(optimal_split_real(curves, float(amount_in)), amount_in)


def grid_optimum(evaluate: Callable[[Sequence[int]], int], legs: int, amount_in: int,
                 steps: int) -> tuple[list[int], int]:
    """Brute force, for checking ``optimal_split``: every split of ``amount_in`` into ``legs``
    parts on a grid of ``amount_in/steps``, scored by ``evaluate`` (exact integer output).
    Costs ``C(steps + legs - 1, legs - 1)`` evaluations."""
    if legs < 1 or steps < 1:
        raise ValueError("legs and steps must be >= 1")
    best: tuple[list[int], int] | None = None
    for bars in itertools.combinations(range(steps + legs - 1), legs - 1):
        parts = [b - a - 1 for a, b in zip((-1, *bars), (*bars, steps + legs - 1), strict=True)]
        amounts = [amount_in * p // steps for p in parts]
        amounts[-1] += amount_in - sum(amounts)
        value = evaluate(amounts)
        if best is None or value > best[1]:
            best = (amounts, value)
    assert best is not None
    return best
