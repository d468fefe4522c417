"""Column types that keep money exact and time unambiguous on both SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, DateTime, Dialect, Numeric, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator, TypeEngine

UINT256_MAX = 2**256 - 1
# Enough digits for any uint256 (2**256 - 1 has 78).
RAW_AMOUNT_DIGITS = 78


def check_raw_amount(value: object, *, what: str = "raw amount") -> int:
    """Return ``value`` if it is a valid uint256 raw amount, else raise a clear error.

    bool is refused although it is an int subclass: ``True`` as an amount is always a bug.
    Floats and Decimals are refused even when integral: amounts must never have passed
    through a float, and accepting ``1e18`` would hide code that computes them as floats.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int (raw token units), got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{what} must not be negative, got {value}")
    if value > UINT256_MAX:
        raise ValueError(f"{what} exceeds uint256 (2**256 - 1), got {value}")
    return value


class RawAmount(TypeDecorator[int]):
    """A uint256 raw token amount, stored without loss.

    PostgreSQL: NUMERIC(78, 0), exact and ordered. SQLite: its NUMERIC affinity turns numbers
    past int64 into REAL and loses digits, so the amount is TEXT instead, zero-padded to 78
    digits so that ``ORDER BY`` and ``<``/``>`` comparisons on the text match numeric order.
    """

    impl = Numeric(RAW_AMOUNT_DIGITS, 0)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(Text())
        return dialect.type_descriptor(Numeric(RAW_AMOUNT_DIGITS, 0, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        amount = check_raw_amount(value)
        if dialect.name == "sqlite":
            return str(amount).zfill(RAW_AMOUNT_DIGITS)
        return Decimal(amount)

    def process_result_value(self, value: Any, dialect: Dialect) -> int | None:
        if value is None:
            return None
        if isinstance(value, str):
            return int(value)
        if isinstance(value, Decimal):
            if value != value.to_integral_value():
                raise ValueError(f"stored raw amount {value} is not an integer")
            return int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise TypeError(f"stored raw amount has unexpected type {type(value).__name__}")

    def coerce_compared_value(self, op: Any, value: Any) -> TypeEngine[Any]:
        # Literals compared with an amount column must be encoded the same way (padded text on
        # SQLite), so they take this type rather than a plain Integer.
        return self


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on both backends.

    SQLite has no time zone type, so SQLAlchemy hands back naive values there; this type
    stores UTC and re-attaches it on read. Naive datetimes are refused on write because the
    ledger cannot know which zone they meant.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"datetime {value.isoformat()} is naive; give it a time zone (UTC)")
        utc = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return utc.replace(tzinfo=None)
        return utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"stored datetime has unexpected type {type(value).__name__}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utc_now() -> datetime:
    return datetime.now(UTC)


# JSONB on PostgreSQL so documents can be compared and indexed; plain JSON text elsewhere.
JsonDocument = JSON().with_variant(JSONB(), "postgresql")
