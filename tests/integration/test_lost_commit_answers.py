"""A lot whose commit answer was lost is the lot the operator registered, recorded once.

Callers on threads (a lot made of other lots, the CLI) are committed by the writer
thread. When the connection breaks around that commit, the ledger cannot tell from the
error whether the lot was recorded. Told "try again", the operator would register a mix
a second time under a new code and draw its raw beef twice; so the ledger finds out: a
mix by who holds its code, a raw lot by sending its events once more.
"""

from __future__ import annotations

from decimal import Decimal

from tests.integration.event_log import event_log
from tests.integration.faults import (
    breaking_the_writer_threads_first_send,
    losing_the_writer_threads_first_answer,
)
from tests.integration.lots import register


def topics(container) -> list[str]:
    return [row[3].rsplit(".", 1)[-1] for row in event_log(container)]


def test_a_mix_whose_answer_was_lost_after_its_commit_is_its_own_mix(
    container, ledger, monkeypatch
):
    register(ledger, "RAW-BEEF-1", "RAW", "100")
    lost = losing_the_writer_threads_first_answer(monkeypatch)

    committed = register(ledger, "MIX-1", "MIX", "30", ("RAW-BEEF-1", "30"))

    assert lost, "the mix committed and its answer was dropped"
    assert committed.aggregate.lot_code == "MIX-1"
    assert committed.position >= max(lost[0])
    assert ledger.find_lot_by_code("MIX-1").id == committed.aggregate.id
    assert ledger.find_lot_by_code("RAW-BEEF-1").consumed_kg == Decimal("30")
    assert topics(container).count("Registered") == 2
    assert topics(container).count("Consumed") == 1
    assert ledger.verify().intact


def test_a_mix_whose_connection_broke_before_the_commit_is_recorded_on_a_new_one(
    container, ledger, monkeypatch
):
    register(ledger, "RAW-BEEF-1", "RAW", "100")
    broken = breaking_the_writer_threads_first_send(monkeypatch)

    committed = register(ledger, "MIX-1", "MIX", "30", ("RAW-BEEF-1", "30"))

    assert broken == [1], "the first send broke with the mix in it"
    assert ledger.find_lot_by_code("MIX-1").id == committed.aggregate.id
    assert ledger.find_lot_by_code("RAW-BEEF-1").consumed_kg == Decimal("30")
    assert topics(container).count("Consumed") == 1


def test_a_raw_lot_whose_answer_was_lost_after_its_commit_is_its_own_lot(
    container, ledger, monkeypatch
):
    """A raw lot goes straight to the writer thread; sent again, its events clash with
    themselves, and the caller gets the lot it registered, not a taken code."""
    lost = losing_the_writer_threads_first_answer(monkeypatch)

    committed = register(ledger, "RAW-BEEF-1", "RAW", "100")

    assert lost, "the raw lot committed and its answer was dropped"
    assert committed.aggregate.lot_code == "RAW-BEEF-1"
    assert committed.position >= max(lost[0])
    assert ledger.find_lot_by_code("RAW-BEEF-1").id == committed.aggregate.id
    assert topics(container) == ["Registered", "Claimed"]
    assert ledger.verify().intact


def test_a_raw_lot_whose_connection_broke_before_the_commit_is_recorded_on_a_new_one(
    container, ledger, monkeypatch
):
    broken = breaking_the_writer_threads_first_send(monkeypatch)

    committed = register(ledger, "RAW-BEEF-1", "RAW", "100")

    assert broken == [1], "the first send broke with the raw lot in it"
    assert ledger.find_lot_by_code("RAW-BEEF-1").id == committed.aggregate.id
    assert topics(container) == ["Registered", "Claimed"]
    assert ledger.verify().intact


def test_a_raw_lot_registered_after_a_failover_cut_the_writers_connection_is_recorded(
    container, ledger, database_url
):
    """The writer thread keeps a connection of its own. Cut while idle, the first send
    fails and nothing is recorded; the events go once more, on a new connection."""
    import psycopg  # noqa: PLC0415

    register(ledger, "RAW-BEFORE-CUT", "RAW", "100")
    with psycopg.connect(database_url, autocommit=True) as admin:
        cut = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'flowviz-writer' AND datname = current_database()"
        ).fetchone()[0]
    batches_before = ledger.recorder.stats.batches

    after = register(ledger, "RAW-AFTER-CUT", "RAW", "100")

    assert cut == 1
    assert ledger.recorder.stats.batches - batches_before == 2  # the cut one, the committed
    assert ledger.find_lot_by_code("RAW-AFTER-CUT").id == after.aggregate.id
    assert topics(container) == ["Registered", "Claimed"] * 2
    assert ledger.verify().intact


def test_a_writer_connection_whose_prepare_failed_is_closed_and_replaced(
    container, ledger, monkeypatch
):
    """The writer prepares the append on each connection it opens. A break during that
    fails the batch like any other (the raw lot's events go once more) and leaves no
    connection open behind it."""
    import psycopg  # noqa: PLC0415

    from ledger.prepared_append import PreparedAppend  # noqa: PLC0415

    prepare, opened = PreparedAppend.prepare, []

    def breaking_the_first(self, conn):
        opened.append(conn)
        if len(opened) == 1:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        prepare(self, conn)

    monkeypatch.setattr(PreparedAppend, "prepare", breaking_the_first)

    committed = register(ledger, "RAW-BEEF-1", "RAW", "100")

    assert len(opened) == 2
    assert opened[0].closed and not opened[1].closed
    assert ledger.find_lot_by_code("RAW-BEEF-1").id == committed.aggregate.id
    assert topics(container) == ["Registered", "Claimed"]
