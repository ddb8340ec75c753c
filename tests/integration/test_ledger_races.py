"""Concurrent requests against one PostgreSQL event store: the invariants still hold.

Each race starts its threads together on a barrier and calls the Ledger directly, as
the API's worker threads do. Every outcome is either a commit or a named refusal.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest

from ledger.commands import NewQcDecision
from ledger.errors import (
    EmailAlreadyRegistered,
    InsufficientQuantity,
    LotCodeAlreadyExists,
    LotNotConsumable,
)
from ledger.lot import LotCode
from ledger.values import SYSTEM_ACTOR_ID
from tests.integration.lots import register

THREADS_PER_CODE = 8
CONSUMERS = 20


@pytest.fixture
def container(make_container):
    """Pools big enough that every racing thread holds a connection at once."""
    return make_container(db_pool_size=CONSUMERS + 4)


def race(calls: list[Callable[[], Any]]) -> list[Any]:
    """Runs the calls at once; returns each one's result or the exception it raised."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> Any:
        barrier.wait(timeout=30)
        try:
            return call()
        except Exception as e:  # noqa: BLE001 - the outcome is what the test inspects
            return e

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def split(outcomes: list[Any]) -> tuple[list[Any], list[Exception]]:
    refused = [o for o in outcomes if isinstance(o, Exception)]
    return [o for o in outcomes if not isinstance(o, Exception)], refused


def topics_by_originator(container) -> list[tuple]:
    with container.read_pool.connection() as conn:
        return conn.execute(
            f"SELECT originator_id, originator_version, topic FROM {container.events_table}"
            " ORDER BY notification_id"
        ).fetchall()


def read_one(container, sql: str, *params: object) -> Any:
    with container.read_pool.connection() as conn:
        return conn.execute(sql, params).fetchone()[0]


# --- two requests creating one code ----------------------------------------------------


@pytest.mark.parametrize(
    "inputs", [(), (("RAW-BEEF-1", "5"),)], ids=["raw-lot", "mix-consuming-raw-beef"]
)
def test_operators_racing_to_register_one_lot_code_get_one_lot(container, ledger, inputs):
    register(ledger, "RAW-BEEF-1", "RAW", "100")

    outcomes = race(
        [lambda: register(ledger, "MIX-1", "MIX", "5", *inputs)] * THREADS_PER_CODE
    )

    won, refused = split(outcomes)
    assert len(won) == 1, outcomes
    assert all(isinstance(e, LotCodeAlreadyExists) for e in refused), refused
    log = topics_by_originator(container)
    claims = [e for e in log if e[0] == LotCode.id_for("MIX-1")]
    assert len(claims) == 1
    registered = [e for e in log if e[2].endswith("Lot.Registered")]
    assert len(registered) == 2  # RAW-BEEF-1 and the single MIX-1
    assert ledger.find_lot_by_code("MIX-1").id == won[0].aggregate.id
    used = Decimal(5) * len(inputs)
    assert ledger.find_lot_by_code("RAW-BEEF-1").consumed_kg == used


def test_two_people_racing_to_register_one_email_get_one_account(container, ledger):
    outcomes = race(
        [
            lambda n=n: ledger.register_user(
                email="QA@plant.example" if n % 2 else "qa@plant.example",
                full_name=f"QA {n}", role="MANAGER", password_hash=None,
                actor_id=SYSTEM_ACTOR_ID,
            )
            for n in range(THREADS_PER_CODE)
        ]
    )

    won, refused = split(outcomes)
    assert len(won) == 1, outcomes
    assert all(isinstance(e, EmailAlreadyRegistered) for e in refused), refused
    users = [e for e in topics_by_originator(container) if e[2].endswith("User.Registered")]
    assert len(users) == 1
    assert ledger.find_user_by_email("qa@plant.example").id == won[0].aggregate.id


# --- many requests consuming one parent ------------------------------------------------


def test_twenty_mixes_racing_for_100_kg_of_raw_beef_never_overdraw_it(container, ledger):
    raw = register(ledger, "RAW-BEEF-1", "RAW", "100").aggregate

    outcomes = race(
        [
            lambda n=n: register(ledger, f"MIX-{n}", "MIX", "10", ("RAW-BEEF-1", "10"))
            for n in range(CONSUMERS)
        ]
    )

    won, refused = split(outcomes)
    assert len(won) == 10, outcomes
    assert all(isinstance(e, InsufficientQuantity) for e in refused), refused
    parent = ledger.get_lot(raw.id)
    assert parent.consumed_kg == Decimal(100)
    assert sorted(parent.consumers) == sorted(c.aggregate.id for c in won)
    for n in range(CONSUMERS):  # a refused mix claimed no code
        code = f"MIX-{n}"
        assert ledger.lot_code_taken(code) == any(
            c.aggregate.lot_code == code for c in won
        )

    container.projector.catch_up()
    assert read_one(
        container, "SELECT consumed_kg FROM lot_state WHERE lot_id = %s", raw.id
    ) == Decimal(100)
    assert read_one(
        container, "SELECT count(*) FROM lot_genealogy WHERE parent_lot_id = %s", raw.id
    ) == 10
    assert read_one(
        container, "SELECT sum(quantity_used_kg) FROM lot_edges WHERE parent_lot_id = %s",
        raw.id,
    ) == Decimal(100)
    assert read_one(container, "SELECT count(*) FROM lots WHERE lot_type = 'MIX'") == 10


def test_finished_goods_racing_across_two_mixes_in_opposite_order_stay_within_both(
    container, ledger
):
    register(ledger, "MIX-A", "MIX", "50")
    register(ledger, "MIX-B", "MIX", "50")

    def fg(n: int):
        pair = [("MIX-A", "10"), ("MIX-B", "10")]
        return register(ledger, f"FG-{n}", "FG", "20", *(pair if n % 2 else pair[::-1]))

    outcomes = race([lambda n=n: fg(n) for n in range(12)])

    won, refused = split(outcomes)
    assert len(won) == 5, outcomes
    assert all(isinstance(e, InsufficientQuantity) for e in refused), refused
    for code in ("MIX-A", "MIX-B"):
        assert ledger.find_lot_by_code(code).consumed_kg == Decimal(50)


def test_unweighed_raw_beef_serves_every_racing_mix(container, ledger):
    raw = register(ledger, "RAW-UNWEIGHED", "RAW", None).aggregate

    outcomes = race(
        [
            lambda n=n: register(ledger, f"MIX-{n}", "MIX", None, ("RAW-UNWEIGHED", "25"))
            for n in range(10)
        ]
    )

    won, refused = split(outcomes)
    assert refused == []
    assert ledger.get_lot(raw.id).consumed_kg == Decimal(250)
    versions = [v for oid, v, _ in topics_by_originator(container) if oid == raw.id]
    assert versions == list(range(1, 12))  # registered, then ten consumptions, no gaps


# --- a HOLD racing consumptions ----------------------------------------------------------


def test_a_hold_racing_mixes_lets_through_only_mixes_committed_before_it(container, ledger):
    raw = register(ledger, "RAW-BEEF-1", "RAW", "1000").aggregate
    hold = NewQcDecision(lot_id=raw.id, decision="HOLD", notes="Listeria swab positive")

    calls: list[Callable[[], Any]] = [
        lambda n=n: register(ledger, f"MIX-{n}", "MIX", "10", ("RAW-BEEF-1", "10"))
        for n in range(CONSUMERS)
    ]
    calls.insert(CONSUMERS // 2, lambda: ledger.record_qc_decision(hold, actor_id=None))
    outcomes = race(calls)

    held = outcomes.pop(CONSUMERS // 2)
    assert not isinstance(held, Exception), held
    won, refused = split(outcomes)
    assert all(isinstance(e, LotNotConsumable) and e.decision == "HOLD" for e in refused)
    # In the parent's own history, every consumption comes before the HOLD.
    history = [(v, t) for oid, v, t in topics_by_originator(container) if oid == raw.id]
    kinds = Counter(t.rsplit(".", 1)[1] for _, t in history)
    assert kinds == Counter(Registered=1, Consumed=len(won), QcDecisionRecorded=1)
    hold_version = next(v for v, t in history if t.endswith("QcDecisionRecorded"))
    assert hold_version == len(won) + 2
    parent = ledger.get_lot(raw.id)
    assert parent.consumed_kg == Decimal(10) * len(won)
    assert parent.qc_status == "HOLD"
    assert sorted(parent.consumers) == sorted(c.aggregate.id for c in won)
    assert sum(ledger.lot_code_taken(f"MIX-{n}") for n in range(CONSUMERS)) == len(won)
