"""Failures no test can time from outside, made to happen where they would."""

from __future__ import annotations

import psycopg

from ledger import loop_writer


def losing_the_first_answer(monkeypatch) -> list:
    """PostgreSQL commits the first batch, then the connection breaks before its answer
    arrives: no test can time a real break into that gap, so the writer is made to drop
    the answer of its first committed batch. Returns that batch's positions once lost."""
    append, lost = loop_writer.LoopWriter._append, []

    async def commit_then_lose_the_answer(self, conn, appends):
        ids = await append(self, conn, appends)
        if not lost:
            lost.append(ids)
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return ids

    monkeypatch.setattr(loop_writer.LoopWriter, "_append", commit_then_lose_the_answer)
    return lost
