"""Vocabulary shared by the aggregates and their callers."""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID


class LotType(StrEnum):
    RAW = "RAW"
    DEB = "DEB"
    BULK = "BULK"
    MIX = "MIX"
    SKW = "SKW"
    FRZ = "FRZ"
    FG = "FG"


class QcDecision(StrEnum):
    PASS = "PASS"
    HOLD = "HOLD"
    FAIL = "FAIL"


class Role(StrEnum):
    ADMIN = "ADMIN"
    MANAGER = "MANAGER"
    AUDITOR = "AUDITOR"
    OPERATOR = "OPERATOR"
    VIEWER = "VIEWER"


# Decisions after which a lot may not be used as an input.
BLOCKING_DECISIONS = frozenset({QcDecision.HOLD, QcDecision.FAIL})

# HOLD and FAIL must say why; auditors read these notes.
MIN_NOTES_FOR_BLOCKING_DECISION = 10

# Actor recorded for commands issued by operators at the command line, not by a user.
SYSTEM_ACTOR_ID = UUID(int=0)
