"""The one money type: a raw integer amount of one token.

Amounts are integers in the token's smallest unit (wei for 18-decimal tokens). Decimals are
applied only to show an amount to a person or to read one typed by a person; nothing sent to a
contract is ever a float.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from dexpilot.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Token:
    symbol: str
    address: str
    decimals: int

    def amount(self, raw: int) -> TokenAmount:
        return TokenAmount(self, raw)

    def parse(self, text: str | int | Decimal) -> TokenAmount:
        """Read a human amount ("1.5") into raw units, refusing anything finer than one unit."""
        return TokenAmount(self, to_raw(text, self.decimals))


@dataclass(frozen=True, slots=True)
class TokenAmount:
    token: Token
    raw: int

    def __post_init__(self) -> None:
        if not isinstance(self.raw, int) or isinstance(self.raw, bool):
            raise TypeError(f"raw amount must be an int, got {type(self.raw).__name__}")

    def __str__(self) -> str:
        return f"{format_units(self.raw, self.token.decimals)} {self.token.symbol}"

    def to_decimal(self) -> Decimal:
        return Decimal(self.raw).scaleb(-self.token.decimals)


def to_raw(text: str | int | Decimal, decimals: int) -> int:
    """Exact decimal -> raw units: "0.1" at 6 decimals is 100000; "0.0000001" is refused."""
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation as exc:
        raise ConfigError(f"not a number: {text!r}") from exc
    if not value.is_finite():
        raise ConfigError(f"not a finite amount: {text!r}")
    scaled = value.scaleb(decimals)
    if scaled != scaled.to_integral_value():
        raise ConfigError(f"{text!r} has more than {decimals} decimal places")
    return int(scaled)


def format_units(raw: int, decimals: int, places: int | None = None) -> str:
    """Raw units -> a decimal string for people, exact unless ``places`` rounds it."""
    value = Decimal(raw).scaleb(-decimals)
    if places is not None:
        return f"{value:,.{places}f}"
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
