"""What every export shares: parsing the dates and tiers users type, and formatting times."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta

from workflows.enums import RiskTier
from workflows.errors import InvalidInput

# Rows fetched per query: large enough that round trips do not dominate, small enough to stay flat.
BATCH_SIZE = 2000
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_when(text: str, *, option: str, end_of_day: bool = False) -> datetime:
    """An aware UTC instant from "YYYY-MM-DD" or an ISO 8601 time (naive times are UTC).

    A bare date means the start of that day, or with `end_of_day` its last microsecond, so that
    `--until 2026-03-31` includes the 31st."""
    raw = text.strip()
    try:
        if _DATE_ONLY.match(raw):
            day = date.fromisoformat(raw)
            moment = datetime.combine(day, time.min, tzinfo=UTC)
            return moment + timedelta(days=1, microseconds=-1) if end_of_day else moment
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00") if raw.endswith("Z") else raw)
    except ValueError:
        raise InvalidInput(f"bad date for {option}: {text!r} (use YYYY-MM-DD or an ISO 8601 time such as "
                           "2026-03-31T17:00:00Z)") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_tier(text: str) -> RiskTier:
    """A risk tier by name, or InvalidInput naming the tiers there are."""
    try:
        return RiskTier(text.strip().lower())
    except ValueError:
        choices = ", ".join(t.value for t in RiskTier)
        raise InvalidInput(f"unknown tier {text!r}: choose one of {choices}") from None


def iso(moment: datetime | None) -> str:
    """A time as ISO 8601 in UTC with microseconds, or "" for none (one format in every export)."""
    return "" if moment is None else moment.astimezone(UTC).isoformat(timespec="microseconds")
