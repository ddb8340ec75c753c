"""Query parameters several routes share, validated the same way everywhere."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import BeforeValidator

# Strict on purpose: a bare date or a time without an offset would silently mean the
# server's midnight or time zone, not the caller's.
_INSTANT = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})"
)


def _instant(value: object) -> object:
    if value is None:
        return None
    if not isinstance(value, str) or not _INSTANT.fullmatch(value):
        raise ValueError(
            "expected an ISO 8601 date-time with a timezone, e.g. 2026-11-26T11:48:50Z"
            " (a '+' offset must be sent as %2B)"
        )
    return datetime.fromisoformat(value)  # still refuses the 30th of February


Instant = Annotated[datetime | None, BeforeValidator(_instant)]
