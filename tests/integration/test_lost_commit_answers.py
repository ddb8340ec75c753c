"""A mix whose commit answer was lost is the mix the operator registered, recorded once.

A lot made of other lots is committed by the writer thread. When the connection breaks
around that commit, the ledger cannot tell from the error whether the mix was recorded.
Told "try again", the operator would register it a second time under a new code and
draw its raw beef twice; so the ledger finds out, by who holds the code.
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
