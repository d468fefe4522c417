"""Which backups to keep: ``keep_daily`` daily and ``keep_weekly`` weekly ones. Pure.

- daily: the newest backup of each UTC day, for the ``keep_daily`` most recent days that have a
  backup;
- weekly: the newest backup of each ISO week (UTC), for the ``keep_weekly`` most recent weeks
  that have a backup.

A backup kept by either rule is kept. Windows count days and weeks *that have backups*, not
calendar days before "now": if the backup job stops for a month, the next prune still keeps the
last good backups instead of deleting all of them (the same rule as restic's and borg's
``--keep-daily``/``--keep-weekly``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from datetime import UTC, datetime

from dexpilot.errors import ConfigError


def backups_to_keep(
    created: Iterable[datetime], *, keep_daily: int, keep_weekly: int
) -> set[datetime]:
    """The subset of ``created`` (aware datetimes) that the retention rules keep."""
    check_retention(keep_daily, keep_weekly)
    given = list(created)
    for when in given:
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError(f"backup time {when.isoformat()} is naive; give it a time zone")
    times = sorted(set(given), reverse=True)

    def day(value: datetime) -> Hashable:
        return value.astimezone(UTC).date()

    def week(value: datetime) -> Hashable:
        iso = value.astimezone(UTC).isocalendar()
        return (iso.year, iso.week)

    return _newest_per_bucket(times, day, keep_daily) | _newest_per_bucket(
        times, week, keep_weekly
    )


def check_retention(keep_daily: int, keep_weekly: int) -> None:
    """``ConfigError`` unless both are ints >= 0 and at least one is > 0."""
    for name, value in (("keep_daily", keep_daily), ("keep_weekly", keep_weekly)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{name} must be an int >= 0, got {value!r}")
    if keep_daily == 0 and keep_weekly == 0:
        raise ConfigError("keep_daily and keep_weekly are both 0: that would delete every backup")


def _newest_per_bucket(
    newest_first: list[datetime], bucket: Callable[[datetime], Hashable], limit: int
) -> set[datetime]:
    kept: set[datetime] = set()
    seen: set[Hashable] = set()
    for value in newest_first:
        if len(seen) >= limit:
            break
        key = bucket(value)
        if key not in seen:
            seen.add(key)
            kept.add(value)
    return kept
