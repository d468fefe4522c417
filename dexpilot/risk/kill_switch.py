"""The kill switch: one flag that makes the risk engine refuse every trade, with its reason.

This module is pure data. Who engages the switch (an operator through the ``control`` flow, the
state machine on ERROR, an alert) and where its state is kept is the caller's business; the
trading cycle reads the current switch and puts it into the ``RiskContext``. While it is engaged
the first risk check rejects every proposal and names the reason, the actor and the time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True, slots=True)
class KillSwitch:
    """``engaged`` with a non-empty ``reason``; ``actor`` and ``since`` say who and when."""

    engaged: bool = False
    reason: str = ""
    actor: str = ""
    since: datetime | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.engaged, bool):
            raise TypeError(f"kill switch: engaged must be a bool, got {self.engaged!r}")
        for name in ("reason", "actor"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"kill switch: {name} must be a str")
        if self.engaged and not self.reason.strip():
            raise ValueError("kill switch: an engaged switch needs a reason")
        if self.since is not None:
            if not isinstance(self.since, datetime):
                raise TypeError("kill switch: since must be a datetime")
            if self.since.tzinfo is None or self.since.utcoffset() is None:
                raise ValueError("kill switch: since is a naive datetime; give it a time zone")

    @classmethod
    def engage(cls, reason: str, *, actor: str, at: datetime | None = None) -> KillSwitch:
        """An engaged switch; ``at`` defaults to now (UTC)."""
        if not isinstance(actor, str) or not actor.strip():
            raise ValueError("kill switch: name the actor who engages it")
        return cls(True, reason, actor, at if at is not None else datetime.now(UTC))

    @classmethod
    def released(cls) -> KillSwitch:
        return cls()

    def describe(self) -> str:
        """One sentence for a rejection reason or a log line."""
        if not self.engaged:
            return "kill switch released"
        who = f" by {self.actor}" if self.actor else ""
        when = ""
        if self.since is not None:
            when = f" since {self.since.astimezone(UTC).isoformat(timespec='seconds')}"
        return f"kill switch engaged{who}{when}: {self.reason}"
