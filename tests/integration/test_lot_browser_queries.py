"""Browsing queries on the read tables: pages newest first, filters, and one lot in detail.

Lots are registered through the ledger with the event clock set, so registration times
(and ties between them) are known; the projector then writes the read tables.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

import pytest

from ledger.commands import InputRef, NewLot, NewQcDecision
from ledger.values import SYSTEM_ACTOR_ID
from projections.db import open_async_pool
from projections.lot_browser import LotFilter, Position, like_prefix, lot_detail, lot_page

T0 = datetime(2030, 3, 1, 6, 0, tzinfo=UTC)


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def register(ledger, code: str, at: datetime, lot_type: str | None = "RAW",
             weight: str | None = None, *inputs: tuple[str, str], lot_id: UUID | None = None):
    new = NewLot(
        lot_code=code, lot_type=lot_type, lot_id=lot_id,
        weight_kg=None if weight is None else Decimal(weight),
        inputs=tuple(InputRef(Decimal(kg), lot_code=parent) for parent, kg in inputs),
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("eventsourcing.domain.datetime_now_with_tzinfo", lambda: at)
        return ledger.register_lot(new, actor_id=SYSTEM_ACTOR_ID).aggregate


def qc(ledger, lot_id: UUID, decision: str) -> None:
    notes = None if decision == "PASS" else "Probe read 9C at the receiving dock"
    ledger.record_qc_decision(
        NewQcDecision(lot_id=lot_id, decision=decision, notes=notes), actor_id=SYSTEM_ACTOR_ID
    )


def run(container, query, *args, **kwargs):
    """Runs one async query on a pool of its own, as the API's event loop would."""

    async def go():
        pool = await open_async_pool(container.conninfo, max_size=1, name="test-browse")
        try:
            return await query(pool, *args, **kwargs)
        finally:
            await pool.close()

    return asyncio.run(go())


def codes(rows) -> list[str]:
    return [r["lot_code"] for r in rows]


def page_codes(container, filters=LotFilter(), **kwargs) -> list[str]:  # noqa: B008
    rows, _ = run(container, lot_page, filters, limit=500, **kwargs)
    return codes(rows)


# --- newest first, page by page -----------------------------------------------------------


@pytest.fixture
def seven_lots(container, ledger):
    """Seven lots; C, D and E were registered in the same microsecond."""
    register(ledger, "A", minutes(0))
    register(ledger, "B", minutes(1))
    tie = minutes(2)
    register(ledger, "C", tie, lot_id=UUID("00000000-0000-4000-8000-000000000001"))
    register(ledger, "D", tie, lot_id=UUID("00000000-0000-4000-8000-000000000003"))
    register(ledger, "E", tie, lot_id=UUID("00000000-0000-4000-8000-000000000002"))
    register(ledger, "F", minutes(3))
    register(ledger, "G", minutes(4))
    container.projector.catch_up()


def test_a_page_lists_the_newest_lot_first_and_breaks_ties_by_id(container, seven_lots):
    assert page_codes(container) == ["G", "F", "D", "E", "C", "B", "A"]


def test_pages_of_three_walk_seven_lots_each_exactly_once(container, seven_lots):
    pages, after = [], None
    for _ in range(5):
        rows, after = run(container, lot_page, LotFilter(), limit=3, after=after)
        pages.append(codes(rows))
        if after is None:
            break
    # The first boundary falls inside the three lots that share a timestamp.
    assert pages == [["G", "F", "D"], ["E", "C", "B"], ["A"]]


def test_a_page_that_holds_the_last_lot_exactly_says_there_is_no_next(container, seven_lots):
    rows, after = run(container, lot_page, LotFilter(), limit=7)
    assert len(rows) == 7 and after is None
    rows, after = run(container, lot_page, LotFilter(), limit=6)
    assert codes(rows)[-1] == "B"
    assert after == Position(minutes(1), rows[-1]["id"])


def test_a_page_after_the_oldest_lot_is_empty(container, seven_lots):
    oldest = run(container, lot_page, LotFilter(code_prefix="A"), limit=1)[0][0]
    rows, after = run(
        container, lot_page, LotFilter(), limit=3,
        after=Position(oldest["created_at"], oldest["id"]),
    )
    assert rows == [] and after is None


# --- filters --------------------------------------------------------------------------


@pytest.fixture
def graded_lots(container, ledger):
    """RAW lots that passed, were held then released, and failed; a held MIX; an FG unseen."""
    qc(ledger, register(ledger, "RAW-1", minutes(0)).id, "PASS")
    raw2 = register(ledger, "RAW-2", minutes(1)).id
    qc(ledger, raw2, "HOLD")
    qc(ledger, raw2, "PASS")
    qc(ledger, register(ledger, "RAW-3", minutes(2)).id, "FAIL")
    qc(ledger, register(ledger, "MIX-1", minutes(3), "MIX").id, "HOLD")
    register(ledger, "FG-1", minutes(4), "FG")
    register(ledger, "UNTYPED-1", minutes(5), None)
    container.projector.catch_up()


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (LotFilter(lot_type="RAW"), ["RAW-3", "RAW-2", "RAW-1"]),
        (LotFilter(lot_type="FG"), ["FG-1"]),
        (LotFilter(lot_type="SKW"), []),
        (LotFilter(qc_status="PASS"), ["RAW-2", "RAW-1"]),  # the latest decision counts
        (LotFilter(qc_status="HOLD"), ["MIX-1"]),
        (LotFilter(qc_status="FAIL"), ["RAW-3"]),
        (LotFilter(qc_status="NONE"), ["UNTYPED-1", "FG-1"]),
        (LotFilter(created_from=minutes(1), created_to=minutes(3)), ["RAW-3", "RAW-2"]),
        (LotFilter(created_from=minutes(4)), ["UNTYPED-1", "FG-1"]),
        (LotFilter(created_to=minutes(0.5)), ["RAW-1"]),
        (LotFilter(lot_type="RAW", qc_status="PASS", created_from=minutes(1)), ["RAW-2"]),
        (LotFilter(code_prefix="RAW-"), ["RAW-3", "RAW-2", "RAW-1"]),
        (LotFilter(code_prefix="raw-"), []),  # codes are case-sensitive
    ],
    ids=repr,
)
def test_each_filter_keeps_only_its_lots_newest_first(container, graded_lots, filters, expected):
    assert page_codes(container, filters) == expected


def test_a_filter_holds_across_pages(container, graded_lots):
    filters = LotFilter(qc_status="NONE")
    first, after = run(container, lot_page, filters, limit=1)
    second, last = run(container, lot_page, filters, limit=1, after=after)
    assert codes(first) == ["UNTYPED-1"] and codes(second) == ["FG-1"] and last is None


def test_a_listed_lot_carries_its_qc_status(container, graded_lots):
    rows, _ = run(container, lot_page, LotFilter(), limit=10)
    assert {r["lot_code"]: r["qc_status"] for r in rows} == {
        "RAW-1": "PASS", "RAW-2": "PASS", "RAW-3": "FAIL", "MIX-1": "HOLD",
        "FG-1": None, "UNTYPED-1": None,
    }


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("A%", {"A%1"}),
        ("A_", {"A_1"}),
        ("A\\", {"A\\1"}),
        ("%", {"%X"}),
        ("A", {"A%1", "A_1", "A\\1", "AB1", "AX1"}),
        ("", {"A%1", "A_1", "A\\1", "AB1", "AX1", "%X", "a%1"}),
    ],
)
def test_a_code_prefix_is_taken_literally(container, ledger, prefix, expected):
    for n, code in enumerate(["A%1", "A_1", "A\\1", "AB1", "AX1", "%X", "a%1"]):
        register(ledger, code, minutes(n))
    container.projector.catch_up()
    assert set(page_codes(container, LotFilter(code_prefix=prefix))) == expected


def test_like_prefix_escapes_every_wildcard():
    assert like_prefix("a\\b%c_d") == "a\\\\b\\%c\\_d%"


# --- one lot in detail ------------------------------------------------------------------


@pytest.fixture
def mixed(container, ledger):
    """RAW-1 (100 kg) goes into MIX-B (40 kg) and then MIX-A (20.5 kg); MIX-B names RAW-2 first.

    Ids run against both orders, so neither list can come out right sorted by id.
    """
    register(ledger, "RAW-1", minutes(0), "RAW", "100", lot_id=UUID(int=1))
    register(ledger, "RAW-2", minutes(1), "RAW", "80.50", lot_id=UUID(int=2))
    register(ledger, "MIX-B", minutes(2), "MIX", "70", ("RAW-2", "30.25"), ("RAW-1", "40"),
             lot_id=UUID(int=4))
    register(ledger, "MIX-A", minutes(3), "MIX", None, ("RAW-1", "20.5"), lot_id=UUID(int=3))
    container.projector.catch_up()


def test_a_lot_consumed_twice_shows_what_was_used_and_what_is_left(container, mixed):
    raw1 = run(container, lot_detail, "RAW-1")
    assert raw1["consumed_kg"] == Decimal("60.5")
    assert raw1["remaining_kg"] == Decimal("39.5")
    assert raw1["inputs"] == []
    assert [
        (o["lot_id"], o["lot_code"], o["quantity_used_kg"], o["linked_at"])
        for o in raw1["outputs"]
    ] == [
        (UUID(int=4), "MIX-B", Decimal("40"), minutes(2)),
        (UUID(int=3), "MIX-A", Decimal("20.5"), minutes(3)),
    ]


def test_a_mix_lists_its_inputs_in_the_order_registered(container, mixed):
    mix = run(container, lot_detail, "MIX-B")
    raw2 = run(container, lot_detail, "RAW-2")
    assert [(i["lot_code"], i["quantity_used_kg"]) for i in mix["inputs"]] == [
        ("RAW-2", Decimal("30.25")), ("RAW-1", Decimal("40")),
    ]
    assert mix["inputs"][0]["lot_id"] == raw2["id"]
    assert mix["outputs"] == []
    assert (mix["consumed_kg"], mix["remaining_kg"]) == (Decimal(0), Decimal(70))
    assert raw2["remaining_kg"] == Decimal("50.25")


def test_a_lot_without_a_weight_has_no_remaining_kg(container, mixed):
    mix = run(container, lot_detail, "MIX-A")
    assert mix["weight_kg"] is None and mix["remaining_kg"] is None
    assert mix["qc_status"] is None and mix["created_at"] == minutes(3)


def test_an_unknown_code_has_no_detail(container, mixed):
    assert run(container, lot_detail, "RAW-9") is None
    assert run(container, lot_detail, "raw-1") is None
