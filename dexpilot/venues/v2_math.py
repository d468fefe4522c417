"""Constant-product (Uniswap V2) swap math: the router's own integer formulas, and nothing else.

``get_amount_out`` is ``UniswapV2Library.getAmountOut`` to the wei: the fee is applied to the
input, the product is floored once. The library writes the fee as ``997/1000``; here it is
``(1_000_000 - fee_ppm) / 1_000_000`` so forks with other fees fit, and for ``fee_ppm = 3000``
both numerator and denominator are the library's times 1000, so the floored result is identical.

This module is the one implementation of V2 output math: the venue quotes with it, the router
splits with it and a backtest's fill model should call it too.
"""

from __future__ import annotations

from collections.abc import Sequence

PPM = 1_000_000
UNISWAP_V2_FEE_PPM = 3_000


def get_amount_out(amount_in: int, reserve_in: int, reserve_out: int,
                   fee_ppm: int = UNISWAP_V2_FEE_PPM) -> int:
    """Output of one constant-product hop for exactly ``amount_in`` (UniswapV2Library)."""
    _check_int("amount_in", amount_in)
    _check_int("reserve_in", reserve_in)
    _check_int("reserve_out", reserve_out)
    if amount_in <= 0:
        raise ValueError("INSUFFICIENT_INPUT_AMOUNT: amount_in must be > 0")
    if reserve_in <= 0 or reserve_out <= 0:
        raise ValueError("INSUFFICIENT_LIQUIDITY: a reserve is empty")
    if not 0 <= fee_ppm < PPM:
        raise ValueError(f"fee_ppm must be in [0, {PPM}), got {fee_ppm}")
    amount_in_with_fee = amount_in * (PPM - fee_ppm)
    numerator = amount_in_with_fee * reserve_out
    denominator = reserve_in * PPM + amount_in_with_fee
    return numerator // denominator


def get_amounts_out(amount_in: int, hops: Sequence[tuple[int, int]],
                    fee_ppm: int | Sequence[int] = UNISWAP_V2_FEE_PPM) -> list[int]:
    """``UniswapV2Library.getAmountsOut``: the amount after each hop, ``amount_in`` first.

    ``hops`` are ``(reserve_in, reserve_out)`` per pool along the path, oriented in the
    direction of the trade.
    """
    if not hops:
        raise ValueError("INVALID_PATH: a path needs at least one hop")
    fees = [fee_ppm] * len(hops) if isinstance(fee_ppm, int) else list(fee_ppm)
    if len(fees) != len(hops):
        raise ValueError(f"{len(hops)} hops but {len(fees)} fees")
    amounts = [amount_in]
    for (reserve_in, reserve_out), fee in zip(hops, fees, strict=True):
        amounts.append(get_amount_out(amounts[-1], reserve_in, reserve_out, fee))
    return amounts


def mid_price(hops: Sequence[tuple[int, int]]) -> float:
    """Raw output units per raw input unit at zero size, before fees (for display/ranking)."""
    price = 1.0
    for reserve_in, reserve_out in hops:
        price *= reserve_out / reserve_in
    return price


def price_impact_bps(amount_in: int, amount_out: int, hops: Sequence[tuple[int, int]]) -> float:
    """How far the execution price falls short of the mid price, in basis points.

    Execution price is ``amount_out / amount_in``; the mid price is the product of the pools'
    reserve ratios, so the LP fee is part of the impact (a tiny trade on a 0.3 % pool shows
    ~30 bps). Floats: for ranking and risk checks only, never for an amount sent on chain.
    """
    mid = mid_price(hops)
    if amount_in <= 0 or mid <= 0:
        return 0.0
    return (1.0 - (amount_out / amount_in) / mid) * 10_000


def _check_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int (raw units), got {type(value).__name__}")
