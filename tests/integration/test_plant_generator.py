"""The demo plant generator: a realistic, deterministic plant written through the ledger."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from itertools import pairwise

import psycopg
import pytest

from api.composition import Container
from api.plant_generator import STAGES, generate
from api.settings import Settings
from tests.conftest import TEST_SECRET
from tests.integration.cli_process import cli_env, flowviz

LOTS, SEED = 300, 20240611
PREVIOUS_STAGE = {s.lot_type: p.lot_type for p, s in pairwise(STAGES)}


def plant_container(database_url: str, schema: str) -> Container:
    return Container(Settings(environment="test", database_url=database_url,
                              database_schema=schema, secret_key=TEST_SECRET, db_pool_size=8),
                     run_projector=False)


@pytest.fixture(scope="module")
def fresh_schemas(database_url: str) -> Iterator:
    made: list[str] = []

    def fresh() -> str:
        made.append(f"t_plant_{uuid.uuid4().hex[:10]}")
        return made[-1]

    yield fresh
    with psycopg.connect(database_url, autocommit=True) as conn:
        for name in made:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def generate_plant(database_url: str, schema: str, seed: int = SEED) -> Container:
    container = plant_container(database_url, schema)
    generate(container.ledger, LOTS, seed=seed, threads=8)
    container.projector.catch_up()
    return container


@pytest.fixture(scope="module")
def plant(database_url: str, fresh_schemas) -> Iterator[Container]:
    container = generate_plant(database_url, fresh_schemas())
    yield container
    container.close()


def rows(container: Container, sql: str) -> list[tuple]:
    with container.read_pool.connection() as conn:
        return conn.execute(sql).fetchall()


EDGES = """SELECT p.lot_type, p.lot_code, c.lot_type, c.lot_code, g.quantity_used_kg
           FROM lot_genealogy g JOIN lots p ON p.id = g.parent_lot_id
           JOIN lots c ON c.id = g.child_lot_id ORDER BY c.lot_code, p.lot_code"""


def test_every_stage_is_made_in_roughly_the_plant_mix(plant):
    counts = dict(rows(plant, "SELECT lot_type, count(*) FROM lots GROUP BY lot_type"))
    assert sum(counts.values()) == LOTS
    assert set(counts) == {s.lot_type for s in STAGES}
    for stage in STAGES:  # the pipeline fills up over the first days: only roughly
        assert 0.03 < counts[stage.lot_type] / LOTS < 0.30, counts


def test_each_stage_consumes_the_stage_before_with_fan_in_and_fan_out(plant):
    edges = rows(plant, EDGES)
    assert {(p, c) for p, _, c, _, _ in edges} == {(p, c) for c, p in PREVIOUS_STAGE.items()}
    parents_of, children_of = {}, {}
    for _, parent, child_type, child, _ in edges:
        parents_of.setdefault((child_type, child), []).append(parent)
        children_of.setdefault(parent, []).append(child)
    mixes = [n for (t, _), n in ((k, len(v)) for k, v in parents_of.items()) if t == "MIX"]
    assert mixes and all(2 <= n <= 4 for n in mixes)
    assert max(len(v) for (t, _), v in parents_of.items() if t == "DEB") > 1
    assert max(len(v) for k, v in children_of.items() if k.startswith("RAW-")) > 1
    assert max(len(v) for k, v in children_of.items() if k.startswith("FRZ-")) > 1


def test_no_lot_gives_more_than_it_weighs_and_boxes_are_boxes(plant):
    over = rows(plant, """
        SELECT l.lot_code FROM lots l JOIN lot_state s ON s.lot_id = l.id
        LEFT JOIN (SELECT parent_lot_id, sum(quantity_used_kg) kg FROM lot_genealogy
                   GROUP BY 1) g ON g.parent_lot_id = l.id
        WHERE s.consumed_kg > l.weight_kg OR s.consumed_kg <> coalesce(g.kg, 0)""")
    assert over == []
    raw, boxes = rows(plant, """
        SELECT array_agg(weight_kg) FILTER (WHERE lot_type = 'RAW'),
               array_agg(weight_kg) FILTER (WHERE lot_type = 'FG') FROM lots""")[0]
    assert all(500 <= kg <= 1500 for kg in raw)
    assert all(5 <= kg <= 20 for kg in boxes)
    located = rows(plant, "SELECT count(*) FROM lots WHERE metadata ? 'location'")[0][0]
    assert located == LOTS


def test_failed_lots_are_never_consumed_and_held_lots_are_released(plant):
    decided = rows(plant, """
        SELECT l.lot_code, array_agg(q.decision ORDER BY q.decided_at),
               (SELECT count(*) FROM lot_genealogy g WHERE g.parent_lot_id = l.id)
        FROM qc_decisions q JOIN lots l ON l.id = q.lot_id GROUP BY l.id, l.lot_code""")
    failed = [used for _, decisions, used in decided if decisions == ["FAIL"]]
    assert failed and not any(failed)
    assert any(decisions == ["HOLD", "PASS"] for _, decisions, _ in decided)
    assert sum(decisions == ["PASS"] for _, decisions, _ in decided) > len(failed)


def test_the_same_seed_builds_the_same_plant(plant, database_url, fresh_schemas):
    again = generate_plant(database_url, fresh_schemas())
    try:
        same = "SELECT lot_code, lot_type, weight_kg, metadata FROM lots ORDER BY lot_code"
        assert rows(again, same) == rows(plant, same)
        assert rows(again, EDGES) == rows(plant, EDGES)
    finally:
        again.close()


def test_a_second_run_needs_its_own_prefix(database_url, fresh_schemas):
    container = plant_container(database_url, fresh_schemas())
    try:
        generate(container.ledger, 10, seed=SEED, threads=4)
        with pytest.raises(ValueError, match="exists already"):
            generate(container.ledger, 10, seed=SEED)
        generate(container.ledger, 10, seed=SEED, prefix="SECOND", threads=4)
        assert container.ledger.lot_code_taken("RAW-SECOND-000001")
    finally:
        container.close()


def test_the_cli_generates_and_projects(database_url, fresh_schemas):
    schema = fresh_schemas()
    env = cli_env(DATABASE_URL=database_url, DATABASE_SCHEMA=schema)
    result = flowviz("demo", "generate", "--lots", "60", "--seed", "5", "--threads", "4",
                     env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "generated 60 lots" in result.stdout
    with psycopg.connect(database_url, autocommit=True) as conn:
        count = conn.execute(f'SELECT count(*) FROM "{schema}".lots').fetchone()[0]
    assert count == 60

    again = flowviz("demo", "generate", "--lots", "60", "--seed", "5", env=env)
    assert again.returncode == 1
    assert "exists already" in again.stderr and "Traceback" not in again.stderr
