"""`flowviz ledger replay|digest|verify`, run as the auditor runs them: in a separate process.

Independent commands run side by side (each is a process of its own, as two auditors'
terminals would be), which keeps the file quick.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import psycopg
import pytest
from psycopg.sql import SQL, Identifier

from api import history_shapes
from ledger.commands import InputRef, NewLot, NewQcDecision
from ledger.hash_chain import Digest
from ledger.values import SYSTEM_ACTOR_ID
from tests.integration.cli_process import flowviz

RAW = "RAW-BEEF-0303"
DIGEST = re.compile(r"^flowviz-digest:v1:(\d+):([0-9a-f]{64})$")


def run_all(*argvs: tuple[str, ...], env: dict[str, str]) -> list:
    with ThreadPoolExecutor(max_workers=len(argvs)) as pool:
        return list(pool.map(lambda argv: flowviz(*argv, env=env), argvs))


@pytest.fixture
def plant(make_container):
    """Beef received (250.00 kg), QC PASS, two debone lots take 12.50 kg and 40.25 kg."""
    container = make_container()
    ledger = container.ledger
    raw = ledger.register_lot(
        NewLot(RAW, "RAW", weight_kg=Decimal("250.00")), actor_id=SYSTEM_ACTOR_ID
    ).aggregate
    ledger.record_qc_decision(
        NewQcDecision(lot_id=raw.id, decision="PASS"), actor_id=SYSTEM_ACTOR_ID
    )
    for code, kg in (("DEB-0303-A", "12.50"), ("DEB-0303-B", "40.25")):
        ledger.register_lot(
            NewLot(code, "DEB", inputs=(InputRef(Decimal(kg), lot_code=RAW),)),
            actor_id=SYSTEM_ACTOR_ID,
        )
    return container


def consumed_position(container) -> int:
    with psycopg.connect(container.settings.database_url) as conn:
        return conn.execute(
            SQL("SELECT min(notification_id) FROM {} WHERE topic LIKE %s").format(
                Identifier(container.settings.database_schema, container.events_table)
            ),
            ("%:Lot.Consumed",),
        ).fetchone()[0]


def test_the_digest_is_printed_and_the_log_verifies_against_it(db_env, plant):
    """The auditor prints the digest, files it, and verifies the log with and without it."""
    filed = str(plant.ledger.digest())
    printed, plain, against, garbage = run_all(
        ("ledger", "digest"),
        ("ledger", "verify"),
        ("ledger", "verify", "--digest", filed),
        ("ledger", "verify", "--digest", "garbage"),
        env=db_env,
    )
    assert printed.returncode == 0, printed.stderr
    line = printed.stdout.strip()
    match = DIGEST.match(line)
    assert match, printed.stdout
    assert int(match[1]) == plant.ledger.recorder.max_notification_id()
    assert line == filed
    assert Digest.parse(line) == plant.ledger.digest()

    assert plain.returncode == 0, plain.stderr
    assert "intact" in plain.stdout
    assert "9 events in 6 streams" in plain.stdout
    assert against.returncode == 0, against.stderr
    assert "intact" in against.stdout and f"digest position {match[1]}" in against.stdout
    assert garbage.returncode == 2
    assert "not a ledger digest" in garbage.stderr
    assert "Traceback" not in garbage.stderr


def test_verify_names_the_first_tampered_event_and_fails(db_env, plant):
    """A superuser switches the guard off and halves a consumption: verify exits 1 and
    names the event's position, with or without the digest taken before."""
    before = str(plant.ledger.digest())
    position = consumed_position(plant)
    with psycopg.connect(plant.settings.database_url, autocommit=True) as conn:
        table = Identifier(plant.settings.database_schema, plant.events_table)
        conn.execute(SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(table))
        try:
            conn.execute(
                SQL("UPDATE {} SET state = convert_to(replace(convert_from(state, 'UTF8'),"
                    " '\"12.50\"', '\"6.25\"'), 'UTF8') WHERE notification_id = %s").format(table),
                (position,),
            )
        finally:
            conn.execute(SQL("ALTER TABLE {} ENABLE TRIGGER USER").format(table))
    assert plant.ledger.find_lot_by_code(RAW).consumed_kg == Decimal("46.50")

    plain, against = run_all(
        ("ledger", "verify"), ("ledger", "verify", "--digest", before), env=db_env
    )
    for result in (plain, against):
        assert result.returncode == 1, result.stdout
        assert f"TAMPERED: first at position {position}: " in result.stderr
        assert "altered" in result.stderr
        assert "intact" not in result.stdout
        assert "Traceback" not in result.stderr


def test_replay_shows_the_events_and_the_state_they_rebuild(db_env, plant):
    """Replaying the beef lot: as a table with the rebuilt state, as the API's JSON, up to
    an instant; an unknown lot and a vague instant are refused plainly."""
    entries = plant.ledger.lot_history(RAW).entries
    second = entries[1].recorded_at.isoformat()

    table, as_json, until, unknown, vague = run_all(
        ("ledger", "replay", RAW),
        ("ledger", "replay", RAW, "--json"),
        ("ledger", "replay", RAW, "--as-of", second, "--json"),
        ("ledger", "replay", "RAW-NEVER-RECEIVED"),
        ("ledger", "replay", RAW, "--as-of", "yesterday"),
        env=db_env,
    )

    assert table.returncode == 0, table.stderr
    for event_type in ("Lot.Registered", "Lot.QcDecisionRecorded", "Lot.Consumed"):
        assert event_type in table.stdout
    assert table.stdout.count("Lot.Consumed") == 2
    assert entries[0].hash.hex()[:16] in table.stdout
    assert (
        "state after replay: qc_status=PASS weight_kg=250.00 consumed_kg=52.75"
        " remaining_kg=197.25"
    ) in table.stdout

    assert as_json.returncode == 0, as_json.stderr
    body = json.loads(as_json.stdout)
    assert list(body) == ["lot_code", "events"]
    assert all(list(e) == list(history_shapes.HISTORY_EVENT_KEYS) for e in body["events"])
    assert body == history_shapes.history(plant.ledger.lot_history(RAW))
    assert [e["version"] for e in body["events"]] == [1, 2, 3, 4]

    assert until.returncode == 0, until.stderr
    assert [e["version"] for e in json.loads(until.stdout)["events"]] == [1, 2]

    assert unknown.returncode == 1
    assert "Lot not found" in unknown.stderr
    assert "Traceback" not in unknown.stderr

    assert vague.returncode == 2
    assert "--as-of" in vague.stderr and "Traceback" not in vague.stderr


def test_replay_shows_a_forged_event_rather_than_crashing(db_env, plant):
    """A consumption inserted by hand (no hash) is exactly what the auditor wants to see."""
    with psycopg.connect(plant.settings.database_url, autocommit=True) as conn:
        table = Identifier(plant.settings.database_schema, plant.events_table)
        conn.execute(
            SQL("INSERT INTO {t} (originator_id, originator_version, topic, state)"
                " SELECT originator_id, originator_version + 2, topic, state FROM {t}"
                " WHERE notification_id = %s").format(t=table),
            (consumed_position(plant),),
        )

    result = flowviz("ledger", "replay", RAW, env=db_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("Lot.Consumed") == 3
