"""Deep genealogy and mass balance on a real PostgreSQL, lots registered through the ledger.

The plant: suspect RAW-A (100 kg) is deboned into DEB-1 (80 kg used, 60 kg made) and
DEB-2 (15 kg used, 12 kg made); 5 kg of RAW-A stay in stock. MIX-1 (90 kg) takes all of
DEB-1, 9 kg of DEB-2 and 21 kg of RAW-B; FG-1 and FG-2 are made of 30 and 45 kg of it.
RAW-B also went into MIX-B, which RAW-A never touched.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from ledger.commands import NewQcDecision
from projections import genealogy
from projections.db import open_async_pool
from tests.integration.lots import register

REASON = "Metal detector alarm on line 2"


def fetch(container, code: str, **options: Any) -> genealogy.Genealogy | None:
    async def go():
        pool = await open_async_pool(container.conninfo, max_size=1, name="test-genealogy")
        try:
            return await genealogy.genealogy(pool, code, **options)
        finally:
            await pool.close()

    container.projector.catch_up()
    return asyncio.run(go())


def scalar(container, sql: str, *params: object) -> Any:
    with container.read_pool.connection() as conn:
        return conn.execute(sql, params).fetchone()[0]


def codes(nodes, direction: str | None = None) -> set[str]:
    return {n.lot["lot_code"] for n in nodes if direction in (None, n.direction)}


@pytest.fixture
def plant(ledger):
    register(ledger, "RAW-A", "RAW", "100")
    register(ledger, "RAW-B", "RAW", "50")
    register(ledger, "DEB-1", "DEB", "60", ("RAW-A", "80"))
    register(ledger, "DEB-2", "DEB", "12", ("RAW-A", "15"))
    register(ledger, "MIX-1", "MIX", "90", ("DEB-1", "60"), ("DEB-2", "9"), ("RAW-B", "21"))
    register(ledger, "FG-1", "FG", "30", ("MIX-1", "30"))
    register(ledger, "FG-2", "FG", "45", ("MIX-1", "45"))
    register(ledger, "MIX-B", "MIX", "10", ("RAW-B", "10"))
    return ledger


# --- the graph -----------------------------------------------------------------------------


def test_downstream_reaches_every_lot_made_from_the_root_at_its_nearest_depth(container, plant):
    g = fetch(container, "RAW-A", direction="downstream")

    assert g.root.lot["lot_code"] == "RAW-A" and g.root.direction == "root"
    depths = {n.lot["lot_code"]: n.depth for n in g.nodes}
    assert depths == {"RAW-A": 0, "DEB-1": 1, "DEB-2": 1, "MIX-1": 2, "FG-1": 3, "FG-2": 3}
    assert codes(g.nodes, "upstream") == set()
    # MIX-1 is reached twice (through DEB-1 and DEB-2) but listed once.
    assert [n.lot["lot_code"] for n in g.nodes].count("MIX-1") == 1
    edges = {(e.parent_lot_code, e.quantity_used_kg) for e in g.edges}
    assert edges == {
        ("RAW-A", Decimal("80")), ("RAW-A", Decimal("15")), ("DEB-1", Decimal("60")),
        ("DEB-2", Decimal("9")), ("MIX-1", Decimal("30")), ("MIX-1", Decimal("45")),
    }
    # RAW-B -> MIX-1 is an input of a node, not an edge of the downstream graph.
    assert "RAW-B" not in {e.parent_lot_code for e in g.inputs}
    every = fetch(container, "RAW-A", direction="downstream", with_inputs=True)
    assert {(e.parent_lot_code, e.quantity_used_kg) for e in every.inputs} == edges | {
        ("RAW-B", Decimal("21"))}
    assert len(every.edges) == len(g.edges)


def test_upstream_goes_back_to_every_raw_lot(container, plant):
    g = fetch(container, "FG-1", direction="upstream")

    assert {n.lot["lot_code"]: n.depth for n in g.nodes[1:]} == {
        "MIX-1": 1, "DEB-1": 2, "DEB-2": 2, "RAW-B": 2, "RAW-A": 3,
    }
    assert all(n.direction == "upstream" for n in g.nodes[1:])
    assert "FG-2" not in codes(g.nodes) and "MIX-B" not in codes(g.nodes)


def test_both_directions_list_root_then_upstream_then_downstream(container, plant):
    g = fetch(container, "MIX-1", direction="both")

    assert [n.direction for n in g.nodes] == ["root"] + ["upstream"] * 4 + ["downstream"] * 2
    assert codes(g.nodes, "upstream") == {"DEB-1", "DEB-2", "RAW-A", "RAW-B"}
    assert codes(g.nodes, "downstream") == {"FG-1", "FG-2"}
    assert len(g.edges) == 7


def test_max_depth_stops_the_walk(container, plant):
    g = fetch(container, "RAW-A", direction="downstream", max_depth=2)

    assert codes(g.nodes) == {"RAW-A", "DEB-1", "DEB-2", "MIX-1"}
    assert g.depth_limit_reached is True
    assert fetch(container, "RAW-A", direction="downstream").depth_limit_reached is False


def test_an_unknown_code_has_no_graph(container, plant):
    assert fetch(container, "NOPE") is None


def test_as_of_shows_the_graph_and_qc_status_as_they_were(container, plant):
    mix = plant.find_lot_by_code("MIX-1")
    plant.record_qc_decision(
        NewQcDecision(lot_id=mix.id, decision="HOLD", notes=REASON), actor_id=None
    )
    plant.record_qc_decision(NewQcDecision(lot_id=mix.id, decision="PASS"), actor_id=None)
    register(plant, "FG-3", "FG", "5", ("MIX-1", "5"))
    container.projector.catch_up()
    held, passed = (
        scalar(container, "SELECT decided_at FROM qc_decisions WHERE lot_id = %s"
                          " AND decision = %s", mix.id, d) for d in ("HOLD", "PASS")
    )
    fg3_made = scalar(container, "SELECT created_at FROM lots WHERE lot_code = 'FG-3'")

    def mix_status(g):
        return next(n.qc_status for n in g.nodes if n.lot["lot_code"] == "MIX-1")

    now = fetch(container, "RAW-A", direction="downstream")
    assert "FG-3" in codes(now.nodes) and mix_status(now) == "PASS"
    while_held = fetch(container, "RAW-A", direction="downstream", as_of=passed - timedelta(
        microseconds=1))
    assert mix_status(while_held) == "HOLD"
    assert "FG-3" not in codes(while_held.nodes)
    before_qc = fetch(container, "RAW-A", direction="downstream", as_of=held - timedelta(
        microseconds=1))
    assert mix_status(before_qc) is None
    just_made = fetch(container, "MIX-1", direction="downstream", as_of=fg3_made)
    assert codes(just_made.nodes, "downstream") == {"FG-1", "FG-2", "FG-3"}
    assert len(just_made.edges) == 3


def test_as_of_before_an_edge_drops_the_edge_and_everything_only_it_reached(container, plant):
    container.projector.catch_up()
    fg2_made = scalar(container, "SELECT created_at FROM lots WHERE lot_code = 'FG-2'")

    g = fetch(container, "FG-2", direction="upstream", as_of=fg2_made - timedelta(microseconds=1))

    assert codes(g.nodes) == {"FG-2"} and g.edges == [] and g.inputs == []


def test_a_cycle_in_the_edges_cannot_loop_the_walk(container, plant):
    """The ledger cannot make a cycle (inputs must exist first): forge one in the table."""
    container.projector.catch_up()
    fg1, deb1 = (plant.find_lot_by_code(c).id for c in ("FG-1", "DEB-1"))
    with container.read_pool.connection() as conn:
        conn.execute(
            "INSERT INTO lot_edges (child_lot_id, ordinal, parent_lot_id, quantity_used_kg,"
            " linked_at) VALUES (%s, 7, %s, 1, now())", (deb1, fg1),
        )

    g = fetch(container, "RAW-A", direction="both", max_depth=genealogy.MAX_DEPTH)

    assert codes(g.nodes, "downstream") == {"DEB-1", "DEB-2", "MIX-1", "FG-1", "FG-2"}
    assert len(g.nodes) == 6  # each lot once however often the cycle came round
    assert ("FG-1", Decimal("1")) in {(e.parent_lot_code, e.quantity_used_kg) for e in g.edges}
    around = fetch(container, "MIX-1", direction="upstream", max_depth=genealogy.MAX_DEPTH)
    assert codes(around.nodes, "upstream") == {"DEB-1", "DEB-2", "RAW-A", "RAW-B", "FG-1"}

    traced = genealogy.recall(g)  # on the cycle kg are unknown, not computed forever
    kg = {t.node.lot["lot_code"]: t.kg for t in traced.lots}
    assert kg["DEB-2"] == Decimal(15)
    assert kg["DEB-1"] is None and kg["MIX-1"] is None and kg["FG-1"] is None
    assert traced.complete is False


# --- mass balance --------------------------------------------------------------------------


def kg3(value: Decimal | None) -> str | None:
    return None if value is None else format(value.quantize(Decimal("0.001")), "f")


def test_recall_traces_the_suspect_kg_through_every_step(container, plant):
    r = genealogy.recall(fetch(container, "RAW-A", direction="downstream"))

    suspect = {t.node.lot["lot_code"]: kg3(t.kg) for t in r.lots}
    # DEB-2 passes 9 of its 12 kg on: 15 × 9/12 = 11.25 kg of RAW-A into MIX-1.
    assert suspect == {
        "DEB-1": "80.000", "DEB-2": "15.000", "MIX-1": "91.250",
        "FG-1": "30.417", "FG-2": "45.625",
    }
    assert [t.node.lot["lot_code"] for t in r.finished_goods] == ["FG-1", "FG-2"]
    assert r.root_consumed_kg == Decimal(95)
    assert r.root_unconsumed_kg == Decimal(5)
    assert kg3(r.kg_in_finished_goods) == "76.042"
    # DEB-2 keeps 3/12 of its 15 kg, MIX-1 15/90 of its 91.25.
    assert kg3(r.kg_in_intermediate_stock) == "18.958"
    assert r.share_accounted_for.quantize(Decimal("0.0001")) == Decimal("1.0000")
    assert r.complete is True and r.unknown_weight_lots == []


def test_a_lot_without_weight_makes_what_it_passed_on_unknown(container, ledger):
    register(ledger, "RAW-U", "RAW", "10")
    register(ledger, "MID", "MIX", None, ("RAW-U", "10"))
    register(ledger, "END", "FG", "5", ("MID", "5"))

    r = genealogy.recall(fetch(container, "RAW-U", direction="downstream"))

    assert {t.node.lot["lot_code"]: t.kg for t in r.lots} == {"MID": Decimal(10), "END": None}
    assert r.unknown_weight_lots == ["MID"]
    assert r.complete is False
    assert r.share_accounted_for == Decimal(0)


def test_a_root_without_weight_has_no_share(container, ledger):
    register(ledger, "RAW-N", "RAW", None)
    register(ledger, "FG-N", "FG", "5", ("RAW-N", "5"))

    r = genealogy.recall(fetch(container, "RAW-N", direction="downstream"))

    assert r.share_accounted_for is None and r.root.kg is None
    assert r.root_consumed_kg == Decimal(5)
    assert r.lots[0].kg is None and r.unknown_weight_lots == ["RAW-N"]


def test_the_source_trace_agrees_with_the_recall(container, plant):
    s = genealogy.source_trace(fetch(container, "FG-1", direction="upstream"))

    in_fg1 = {t.node.lot["lot_code"]: kg3(t.kg) for t in s.lots}
    # FG-1 is 30 kg of MIX-1: 30 × 60/90 = 20 kg of DEB-1, which holds 80/60 kg of RAW-A
    # per kg, and 30 × 9/90 = 3 kg of DEB-2 holding 15/12: 26.667 + 3.75 kg of RAW-A.
    assert in_fg1 == {
        "MIX-1": "30.000", "DEB-1": "20.000", "DEB-2": "3.000", "RAW-B": "7.000",
        "RAW-A": "30.417",
    }
    recall = genealogy.recall(fetch(container, "RAW-A", direction="downstream"))
    assert kg3(next(t.kg for t in recall.lots if t.node.lot["lot_code"] == "FG-1")) == "30.417"
    assert [t.node.lot["lot_code"] for t in s.raw_lots] == ["RAW-B", "RAW-A"]  # nearest first
    assert kg3(s.kg_from_raw_lots) == "37.417"
    assert s.complete is True
