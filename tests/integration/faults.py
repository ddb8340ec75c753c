"""Failures no test can time from outside, made to happen where they would."""

from __future__ import annotations

import psycopg

from ledger import group_commit, loop_writer

_BROKEN = "server closed the connection unexpectedly"


def _first_only(seen: list, value: object) -> None:
    """Raises the break the first time (remembering `value`), never after."""
    if not seen:
        seen.append(value)
        raise psycopg.OperationalError(_BROKEN)


def losing_the_first_answer(monkeypatch) -> list:
    """PostgreSQL commits the first batch, then the connection breaks before its answer
    arrives: no test can time a real break into that gap, so the writer is made to drop
    the answer of its first committed batch. Returns that batch's positions once lost."""
    append, lost = loop_writer.LoopWriter._append, []

    async def commit_then_lose_the_answer(self, conn, appends):
        ids = await append(self, conn, appends)
        _first_only(lost, ids)
        return ids

    monkeypatch.setattr(loop_writer.LoopWriter, "_append", commit_then_lose_the_answer)
    return lost


def losing_the_writer_threads_first_answer(monkeypatch) -> list:
    """The same for the writer thread, which commits for callers on threads (a lot made
    of other lots, the CLI)."""
    positions, lost = group_commit.GroupCommitRecorder._sent_positions, []

    def commit_then_lose_the_answer(self, conn):
        ids = positions(self, conn)
        _first_only(lost, ids)
        return ids

    monkeypatch.setattr(
        group_commit.GroupCommitRecorder, "_sent_positions", commit_then_lose_the_answer
    )
    return lost


def breaking_the_writer_threads_first_send(monkeypatch) -> list:
    """The writer thread's connection breaks before its first batch reaches PostgreSQL:
    nothing of that batch is recorded. Returns the size of that batch once broken."""
    send, broken = group_commit.GroupCommitRecorder._send_appends, []

    def break_before_sending(self, conn, appends):
        _first_only(broken, len(appends))
        send(self, conn, appends)

    monkeypatch.setattr(group_commit.GroupCommitRecorder, "_send_appends", break_before_sending)
    return broken
