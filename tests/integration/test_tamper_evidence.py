"""Tamper evidence: whoever rewrites the event log behind the ledger's back is named.

The guard triggers stop accidents and ordinary roles; a superuser can switch them off.
What then proves the plant's history is the hash chain: every event's `hash` chains it
to the previous event of its stream, every `log_hash` folds it into the whole log, and
a digest kept outside the system pins the log up to a position. These tests play the
superuser who edits, deletes and forges rows, and check that `verify` names each one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from decimal import Decimal
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.sql import SQL, Identifier

from ledger import hash_chain
from ledger.commands import InputRef, NewLot, NewQcDecision
from ledger.hash_chain import GENESIS, Digest
from ledger.user import User
from ledger.values import SYSTEM_ACTOR_ID

RAW = "RAW-BEEF-0301"
DEB = "DEB-0301-A"
SLOW_FSYNC = 0.002


# --- the plant and the raw table -----------------------------------------------------------


def a_day_at_the_plant(ledger) -> dict[str, Any]:
    """Beef received, passed by QC, debone line takes 80 kg of it, a QA lead gets an account.

    Eight events in six streams: the raw lot (registered, QC, consumed) and its code claim,
    the debone lot and its claim, the user and the e-mail claim.
    """
    raw = ledger.register_lot(
        NewLot(RAW, "RAW", weight_kg=Decimal("250.00"), temperature_c=Decimal("2.5")),
        actor_id=SYSTEM_ACTOR_ID,
    ).aggregate
    ledger.record_qc_decision(
        NewQcDecision(lot_id=raw.id, decision="PASS"), actor_id=SYSTEM_ACTOR_ID
    )
    deb = ledger.register_lot(
        NewLot(DEB, "DEB", weight_kg=Decimal("80.00"),
               inputs=(InputRef(Decimal("80.00"), lot_code=RAW),)),
        actor_id=SYSTEM_ACTOR_ID,
    ).aggregate
    user = ledger.register_user(
        email="qa.lead@plant.example", full_name="QA Lead", role="MANAGER",
        password_hash=None, actor_id=SYSTEM_ACTOR_ID,
    ).aggregate
    return {"raw": raw, "deb": deb, "user": user}


def events_table(container) -> Identifier:
    return Identifier(container.settings.database_schema, container.events_table)


def log_rows(container) -> list[dict[str, Any]]:
    """The raw log with its hashes, in notification order, read past the ledger."""
    with psycopg.connect(container.settings.database_url, row_factory=dict_row) as conn:
        return conn.execute(
            SQL(
                "SELECT notification_id, originator_id, originator_version, topic, state,"
                " hash, log_hash FROM {} ORDER BY notification_id"
            ).format(events_table(container))
        ).fetchall()


def row_of(container, originator_id, version: int) -> dict[str, Any]:
    return next(
        r for r in log_rows(container)
        if r["originator_id"] == originator_id and r["originator_version"] == version
    )


@contextmanager
def superuser(container) -> Iterator[psycopg.Connection]:
    """A connection of its own, as a superuser with the guard triggers off for the session."""
    with psycopg.connect(container.settings.database_url, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        yield conn


def recompute(rows: list[dict[str, Any]]) -> list[tuple[bytes, bytes]]:
    """Every row's (hash, log_hash) as the chain says they must be, from the rows alone."""
    last_of_stream: dict[Any, bytes] = {}
    running = GENESIS
    out = []
    for row in rows:
        h = hash_chain.event_hash(
            last_of_stream.get(row["originator_id"]), row["originator_id"],
            row["originator_version"], row["topic"], bytes(row["state"]),
        )
        running = hash_chain.fold(running, h)
        last_of_stream[row["originator_id"]] = h
        out.append((h, running))
    return out


def rewrite_history(container, position: int, state: bytes) -> int:
    """What a careful forger does: edit one event, then re-hash it and everything after it
    so that every stream's chain and the log's chain are self-consistent again.
    Returns how many rows had to be rewritten."""
    rows = log_rows(container)
    for row in rows:
        if row["notification_id"] == position:
            row["state"] = state
    rewritten = 0
    with superuser(container) as conn:
        for row, (h, log_h) in zip(rows, recompute(rows), strict=True):
            if (bytes(row["hash"]), bytes(row["log_hash"])) != (h, log_h) or (
                row["notification_id"] == position
            ):
                conn.execute(
                    SQL("UPDATE {} SET state = %s, hash = %s, log_hash = %s"
                        " WHERE notification_id = %s").format(events_table(container)),
                    (bytes(row["state"]), h, log_h, row["notification_id"]),
                )
                rewritten += 1
    return rewritten


def consumed_row(container, lot_id, version: int | None = None) -> dict[str, Any]:
    rows = [
        r for r in log_rows(container)
        if r["originator_id"] == lot_id and r["topic"].endswith(":Lot.Consumed")
        and (version is None or r["originator_version"] == version)
    ]
    assert rows, "no Lot.Consumed recorded"
    return rows[0]


# --- an honest log ---------------------------------------------------------------------------


def test_a_day_at_the_plant_verifies_intact_and_digests_to_the_log_head(container, ledger):
    """After an ordinary day the log verifies intact, and the digest names the last event."""
    a_day_at_the_plant(ledger)

    result = ledger.verify()
    assert result.intact
    assert result.findings == []
    assert (result.events, result.streams) == (8, 6)
    assert result.digest_checked is None

    digest = ledger.digest()
    rows = log_rows(container)
    assert digest.position == ledger.recorder.max_notification_id() == rows[-1]["notification_id"]
    assert digest.log_hash == bytes(rows[-1]["log_hash"])
    assert digest.log_hash != GENESIS

    against = ledger.verify(digest)
    assert against.intact and against.findings == []
    assert against.digest_checked == digest


def test_a_digest_stays_valid_while_the_log_grows(container, ledger):
    """The auditor's digest from last night still verifies after a new day's appends."""
    day = a_day_at_the_plant(ledger)
    last_night = ledger.digest()
    ledger.register_lot(
        NewLot("DEB-0302-B", "DEB", inputs=(InputRef(Decimal("20.00"), lot_code=RAW),)),
        actor_id=day["user"].id,
    )

    result = ledger.verify(last_night)
    assert result.intact, result.findings
    assert result.events == 11
    assert ledger.digest().position > last_night.position


def test_an_empty_log_has_the_genesis_digest(ledger):
    """Before the plant records anything, the digest is position 0 and the zero hash."""
    assert ledger.digest() == Digest(0, GENESIS)
    result = ledger.verify(Digest(0, GENESIS))
    assert result.intact and (result.events, result.streams) == (0, 0)


def test_a_digest_survives_being_printed_and_read_back(ledger):
    """The auditor copies the digest onto paper and types it back in months later."""
    a_day_at_the_plant(ledger)
    digest = ledger.digest()
    text = str(digest)

    assert text == f"flowviz-digest:v1:{digest.position}:{digest.log_hash.hex()}"
    assert Digest.parse(text) == digest
    assert Digest.parse(f"  {text}\n") == digest


GOOD_HASH = "ab" * 32
NOT_DIGESTS = {
    "empty": "",
    "wrong-prefix": f"flowviz-digest:v2:5:{GOOD_HASH}",
    "other-product": f"acme-digest:v1:5:{GOOD_HASH}",
    "missing-hash": "flowviz-digest:v1:5",
    "extra-field": f"flowviz-digest:v1:5:{GOOD_HASH}:x",
    "bad-hex": f"flowviz-digest:v1:5:{'zz' * 32}",
    "odd-hex": f"flowviz-digest:v1:5:{GOOD_HASH}a",
    "short-hash": f"flowviz-digest:v1:5:{'ab' * 31}",
    "long-hash": f"flowviz-digest:v1:5:{'ab' * 33}",
    "negative-position": f"flowviz-digest:v1:-1:{GOOD_HASH}",
    "position-not-a-number": f"flowviz-digest:v1:five:{GOOD_HASH}",
}


@pytest.mark.parametrize("text", NOT_DIGESTS.values(), ids=NOT_DIGESTS.keys())
def test_parse_refuses_what_is_not_a_digest(text):
    with pytest.raises(ValueError, match="not a ledger digest"):
        Digest.parse(text)


def test_every_stored_hash_is_the_chain_recomputed_independently(container, ledger):
    """Recomputing in Python what the SQL append function wrote: each event's hash from its
    stream predecessor's hash, and the log hash folded in notification order. Includes an
    account whose three events (created, role corrected, deactivated) went in one save, so
    a predecessor from within the same batch is covered too."""
    a_day_at_the_plant(ledger)
    temp = User(id=uuid4(), email="temp@plant.example", full_name=None,
                role="VIEWER", password_hash=None, actor_id=SYSTEM_ACTOR_ID)
    temp.change_role("OPERATOR", actor_id=SYSTEM_ACTOR_ID)
    temp.deactivate(actor_id=SYSTEM_ACTOR_ID)
    ledger.save(temp)

    rows = log_rows(container)
    assert len(rows) == 11
    assert [r["originator_version"] for r in rows if r["originator_id"] == temp.id] == [1, 2, 3]
    assert all(r["hash"] is not None and r["log_hash"] is not None for r in rows)

    expected = recompute(rows)
    assert [(bytes(r["hash"]), bytes(r["log_hash"])) for r in rows] == expected
    # Spot-check the chaining by hand for the batch: version 2 chains onto version 1.
    v1, v2 = (r for r in rows if r["originator_id"] == temp.id and r["originator_version"] < 3)
    assert bytes(v2["hash"]) == hash_chain.event_hash(
        bytes(v1["hash"]), temp.id, 2, v2["topic"], bytes(v2["state"])
    )
    assert bytes(rows[0]["log_hash"]) == hash_chain.fold(GENESIS, bytes(rows[0]["hash"]))
    assert len({bytes(r["hash"]) for r in rows}) == len(rows)
    assert ledger.verify().intact


def test_sixteen_lines_registering_at_once_leave_the_chains_intact(make_container):
    """Sixteen debone stations register 60 DEB lots from four beef lots at once. The
    group-commit writer batches their appends into shared transactions; stations using
    the same beef lot take turns. Every committed event still chains correctly, in its
    stream and in the log, and no station is refused."""
    container = make_container(db_pool_size=24)
    ledger = container.ledger
    raws = [
        ledger.register_lot(
            NewLot(f"{RAW}-{k}", "RAW", weight_kg=Decimal("600.00")), actor_id=SYSTEM_ACTOR_ID
        ).aggregate
        for k in range(4)
    ]

    recorder = ledger.recorder
    batch_sizes: list[int] = []
    finish = recorder._finish

    def slow_disk_finish(batch):
        batch_sizes.append(len(batch))
        time.sleep(SLOW_FSYNC)  # a slow fsync: the queue fills up behind the writer
        return finish(batch)

    def register(n: int) -> None:
        ledger.register_lot(
            NewLot(f"DEB-0301-{n:02d}", "DEB", weight_kg=Decimal("2.50"),
                   inputs=(InputRef(Decimal("2.50"), lot_code=f"{RAW}-{n % 4}"),)),
            actor_id=SYSTEM_ACTOR_ID,
        )

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(recorder, "_finish", slow_disk_finish)
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(register, range(60)))  # raises if any station was refused

    assert max(batch_sizes) > 1, "no two appends were ever committed together"
    for raw in raws:
        beef = ledger.get_lot(raw.id)
        assert beef.consumed_kg == Decimal("37.50")
        assert len(beef.consumers) == 15 and beef.version == 16

    result = ledger.verify()
    assert result.intact, result.findings[:5]
    assert (result.events, result.streams) == (4 * 2 + 60 * 3, 4 * 2 + 60 * 2)
    rows = log_rows(container)
    assert [(bytes(r["hash"]), bytes(r["log_hash"])) for r in rows] == recompute(rows)


@pytest.mark.parametrize("writer", ["writer thread", "event loop's writer task"])
def test_a_batch_with_a_clash_commits_the_others_each_under_its_savepoint(
    container, ledger, writer
):
    """Two appends race for the same version of one lot inside one batch: the batch falls
    back to a savepoint per append, the loser alone is refused, the winner and a bystander
    commit, and the chains stay intact across the rolled-back savepoint. Both writers,
    the thread's and an event loop's, fall back alike."""
    from ledger.appends import Append, Awaited  # noqa: PLC0415 - the writers' unit of work
    from ledger.lot import Lot  # noqa: PLC0415

    raw = ledger.register_lot(
        NewLot(RAW, "RAW", weight_kg=Decimal("100.00")), actor_id=SYSTEM_ACTOR_ID
    ).aggregate

    def consumption(kg: str) -> list:
        lot = ledger.get_lot(raw.id)
        lot.consume(child_lot_id=uuid4(), quantity_kg=Decimal(kg), actor_id=None)
        return [ledger.mapper.to_stored_event(e) for e in lot.collect_events()]

    bystander = Lot(id=uuid4(), lot_code="RAW-OTHER", lot_type="RAW", production_run_id=None,
                    phase_id=None, operator_id=None, weight_kg=None, temperature_c=None,
                    metadata_json="{}", inputs=[], actor_id=None)
    appends = [
        consumption("10.00"),
        consumption("20.00"),  # the same version 2 of the raw lot: a clash
        [ledger.mapper.to_stored_event(e) for e in bystander.collect_events()],
    ]

    if writer == "writer thread":
        batch = [Append(events) for events in appends]
        assert ledger.recorder._send(batch)
        ledger.recorder._finish(batch)
    else:

        async def on_the_loop() -> list:
            loop = asyncio.get_running_loop()
            batch = [Append(events, Awaited(loop)) for events in appends]
            await ledger.recorder._loop_writer(loop)._commit(batch, slot=0)
            return batch

        batch = asyncio.run(on_the_loop())

    assert batch[0].error is None and batch[0].ids
    assert batch[1].error is not None and batch[1].ids is None
    assert batch[2].error is None and batch[2].ids
    assert ledger.get_lot(raw.id).consumed_kg == Decimal("10.00")
    assert ledger.verify().intact
    rows = log_rows(container)
    assert [(bytes(r["hash"]), bytes(r["log_hash"])) for r in rows] == recompute(rows)


# --- the superuser rewrites history ----------------------------------------------------------


def test_an_altered_consumption_is_named_at_its_position(container, ledger):
    """Someone makes it look as if the debone line took 8 kg of beef, not 80."""
    day = a_day_at_the_plant(ledger)
    row = consumed_row(container, day["raw"].id)
    assert b'"80.00"' in bytes(row["state"])

    with superuser(container) as conn:
        conn.execute(
            SQL("UPDATE {} SET state = %s WHERE notification_id = %s").format(
                events_table(container)
            ),
            (bytes(row["state"]).replace(b'"80.00"', b'"8.00"'), row["notification_id"]),
        )
    assert ledger.get_lot(day["raw"].id).consumed_kg == Decimal("8.00")  # the lie loads fine

    result = ledger.verify()
    assert not result.intact
    first = result.findings[0]
    assert first.position == row["notification_id"]
    assert "altered" in first.what
    assert RAW in first.what and "Lot.Consumed" in first.what
    assert str(first).startswith(f"position {row['notification_id']}: ")
    assert len(result.findings) == 1  # its successors are not blamed for it


def test_a_consumption_deleted_from_the_middle_of_a_stream_is_named_as_removed(container, ledger):
    """Beef consumed twice; the first consumption (version 2 of its stream) is deleted."""
    raw = ledger.register_lot(
        NewLot(RAW, "RAW", weight_kg=Decimal("250.00")), actor_id=SYSTEM_ACTOR_ID
    ).aggregate
    for code, kg in (("DEB-1", "60.00"), ("DEB-2", "40.00")):
        ledger.register_lot(
            NewLot(code, "DEB", inputs=(InputRef(Decimal(kg), lot_code=RAW),)),
            actor_id=SYSTEM_ACTOR_ID,
        )
    deleted = row_of(container, raw.id, 2)
    third = row_of(container, raw.id, 3)
    assert deleted["topic"].endswith(":Lot.Consumed")

    with superuser(container) as conn:
        conn.execute(
            SQL("DELETE FROM {} WHERE notification_id = %s").format(events_table(container)),
            (deleted["notification_id"],),
        )

    result = ledger.verify()
    assert not result.intact
    removed = [f for f in result.findings if "removed" in f.what and "version 2" in f.what]
    assert len(removed) == 1
    assert removed[0].position == third["notification_id"]
    assert RAW in removed[0].what
    positions = [f.position for f in result.findings]
    assert positions == sorted(positions)


def test_a_whole_lot_deleted_breaks_the_log_chain(container, ledger):
    """The debone lot is deleted outright, every event of it: no stream is left to notice a
    gap, but the log's chain does."""
    day = a_day_at_the_plant(ledger)
    rows = log_rows(container)
    gone = [r["notification_id"] for r in rows if r["originator_id"] == day["deb"].id]
    assert gone and gone[-1] < rows[-1]["notification_id"]

    with superuser(container) as conn:
        conn.execute(
            SQL("DELETE FROM {} WHERE originator_id = %s").format(events_table(container)),
            (day["deb"].id,),
        )

    result = ledger.verify()
    assert not result.intact
    assert result.streams == 5 and result.events == 8 - len(gone)
    assert all("chain breaks" in f.what for f in result.findings)
    following = min(r["notification_id"] for r in rows if r["notification_id"] > gone[0]
                    and r["notification_id"] not in gone)
    assert result.findings[0].position == following
    assert f"between positions {gone[0] - 1} and {following}" in result.findings[0].what


def test_deleting_the_last_event_needs_the_digest_to_be_seen(container, ledger):
    """The honest limit: removing the newest event leaves a log that is self-consistent up
    to its new end, so without an outside reference nothing can tell. The digest the
    auditor took before is that reference: its position is no longer in the log."""
    a_day_at_the_plant(ledger)
    before = ledger.digest()

    with superuser(container) as conn:
        conn.execute(
            SQL("DELETE FROM {} WHERE notification_id = %s").format(events_table(container)),
            (before.position,),
        )

    alone = ledger.verify()
    assert alone.intact and alone.events == 7  # undetectable without the digest

    result = ledger.verify(before)
    assert not result.intact
    assert [f.position for f in result.findings] == [before.position]
    assert "no longer in the log" in result.findings[0].what


def test_a_forged_event_inserted_with_the_guard_on_has_no_hash(container, ledger):
    """INSERT is not refused: the ledger itself inserts. A second copy of the debone line's
    consumption is slipped in as the beef lot's next version; it carries no hash, and is
    the only event named, even after the plant has appended more."""
    day = a_day_at_the_plant(ledger)
    original = consumed_row(container, day["raw"].id)
    latest = max(r["originator_version"] for r in log_rows(container)
                 if r["originator_id"] == day["raw"].id)

    with psycopg.connect(container.settings.database_url, autocommit=True) as conn:
        forged = conn.execute(
            SQL("INSERT INTO {} (originator_id, originator_version, topic, state)"
                " VALUES (%s, %s, %s, %s) RETURNING notification_id").format(
                    events_table(container)),
            (day["raw"].id, latest + 1, original["topic"], bytes(original["state"])),
        ).fetchone()[0]
    assert ledger.get_lot(day["raw"].id).consumed_kg == Decimal("160.00")  # the forgery loads

    result = ledger.verify()
    assert not result.intact
    assert result.findings[0].position == forged
    assert "no hash" in result.findings[0].what
    assert [f.position for f in result.findings] == [forged]

    # The plant keeps working; the chain steps over the forgery, so the honest events
    # written after it are not blamed for it.
    ledger.register_lot(NewLot("RAW-0302-LAMB", "RAW"), actor_id=SYSTEM_ACTOR_ID)
    later = ledger.verify()
    assert later.events == result.events + 2
    assert [f.position for f in later.findings] == [forged]


def test_a_consistent_rewrite_passes_alone_but_not_against_the_digest(container, ledger):
    """The careful forger: changes the consumption to 8 kg and re-hashes it and every later
    event, so both chains are self-consistent. Only the digest the auditor kept outside
    the system, from before the rewrite, can tell."""
    day = a_day_at_the_plant(ledger)
    before = ledger.digest()
    ledger.register_lot(  # the next morning: the log grows past the digest
        NewLot("DEB-0302-B", "DEB", inputs=(InputRef(Decimal("20.00"), lot_code=RAW),)),
        actor_id=SYSTEM_ACTOR_ID,
    )
    row = consumed_row(container, day["raw"].id, version=3)

    rewritten = rewrite_history(
        container, row["notification_id"],
        bytes(row["state"]).replace(b'"80.00"', b'"8.00"'),
    )
    assert rewritten >= 2  # the edited event and at least every later log hash
    assert ledger.get_lot(day["raw"].id).consumed_kg == Decimal("28.00")

    alone = ledger.verify()
    assert alone.intact, alone.findings  # both chains recomputed: self-consistent

    result = ledger.verify(before)
    assert not result.intact
    assert [f.position for f in result.findings] == [before.position]
    assert "digest" in result.findings[0].what


def test_a_rewrite_that_also_deletes_the_digests_own_event_is_still_seen(container, ledger):
    """The forger also deletes the one event the digest points at (the QA lead's e-mail
    claim, a stream of one event) and re-hashes everything: the digest must still tell."""
    day = a_day_at_the_plant(ledger)
    before = ledger.digest()
    ledger.register_lot(
        NewLot("DEB-0302-B", "DEB", inputs=(InputRef(Decimal("20.00"), lot_code=RAW),)),
        actor_id=SYSTEM_ACTOR_ID,
    )
    row = consumed_row(container, day["raw"].id, version=3)
    with superuser(container) as conn:
        conn.execute(
            SQL("DELETE FROM {} WHERE notification_id = %s").format(events_table(container)),
            (before.position,),
        )
    rewrite_history(container, row["notification_id"],
                    bytes(row["state"]).replace(b'"80.00"', b'"8.00"'))
    assert ledger.get_lot(day["raw"].id).consumed_kg == Decimal("28.00")

    assert not ledger.verify(before).intact


def test_a_ledger_recorded_before_hashing_is_sealed_once_on_upgrade(settings):
    """A plant upgrades: its log was written without hashes. The first start of the new
    version seals every event in log order, so verify is intact from then on, and later
    starts leave the events table alone (no table lock while the plant works)."""
    from ledger.application import Ledger  # noqa: PLC0415
    from ledger.event_store import ensure_schema, postgres_env  # noqa: PLC0415

    url, schema = settings.database_url, settings.database_schema
    ensure_schema(url, schema)
    old = Ledger(postgres_env(url, schema=schema, group_commit=False))  # no hash columns
    old.register_lot(NewLot("RAW-OLD-1", "RAW", weight_kg=Decimal(10)), actor_id=None)
    old.register_lot(
        NewLot("DEB-OLD-1", "DEB", inputs=(InputRef(Decimal(4), lot_code="RAW-OLD-1"),)),
        actor_id=None,
    )
    old.close()

    upgraded = Ledger(postgres_env(url, schema=schema))
    try:
        upgraded.register_lot(
            NewLot("DEB-NEW-1", "DEB", inputs=(InputRef(Decimal(3), lot_code="RAW-OLD-1"),)),
            actor_id=None,
        )
        result = upgraded.verify()
        assert result.intact, result.findings
        assert result.events == 5 + 3  # two old lots, their claims, one consumption; one new
        history = upgraded.lot_history("RAW-OLD-1")
        assert all(e.hash is not None for e in history.entries)
        assert [e.prev_hash for e in history.entries[1:]] == [e.hash for e in history.entries[:-1]]
        with psycopg.connect(url, autocommit=True) as conn:  # the guard is back in place
            with pytest.raises(psycopg.errors.RaiseException):
                conn.execute(f'DELETE FROM "{schema}".ledger_events')

        # An auditor's long read is open while another worker starts: the start must not
        # wait for it (an ALTER TABLE would, and every request would queue behind it).
        with psycopg.connect(url) as reader:
            reader.execute(f'SELECT count(*) FROM "{schema}".ledger_events').fetchone()
            started = ThreadPoolExecutor(1).submit(
                lambda: Ledger(postgres_env(url, schema=schema)).close()
            )
            started.result(timeout=10)
            reader.rollback()
    finally:
        upgraded.close()


def test_a_digest_of_the_empty_log_must_be_the_empty_digest(ledger):
    """Position 0 names no event: only the all-zero digest can stand for it."""
    empty = Digest.parse("flowviz-digest:v1:0:" + "00" * 32)
    forged = Digest.parse("flowviz-digest:v1:0:" + "ab" * 32)

    assert ledger.verify(empty).intact
    assert not ledger.verify(forged).intact


# --- snapshots -------------------------------------------------------------------------------


def a_raw_lot_feeding_sixty_mixes(ledger):
    """A raw lot drawn from 60 times: the ledger snapshots it at version 50."""
    raw = ledger.register_lot(
        NewLot(lot_code="RAW-BEEF-SNAP", lot_type="RAW", weight_kg=Decimal(1000)),
        actor_id=SYSTEM_ACTOR_ID,
    ).aggregate
    for n in range(60):
        ledger.register_lot(
            NewLot(
                lot_code=f"MIX-SNAP-{n}",
                inputs=(InputRef(quantity_used_kg=Decimal("1.5"), lot_code="RAW-BEEF-SNAP"),),
            ),
            actor_id=SYSTEM_ACTOR_ID,
        )
    [snapshot] = ledger.snapshots.get(raw.id, desc=True, limit=1)
    assert snapshot.originator_version == 50
    return raw


def snapshots_table(container, ledger) -> Identifier:
    return Identifier(
        container.settings.database_schema, ledger.snapshots.recorder.events_table_name
    )


def test_a_ledger_with_snapshots_verifies_intact(container, ledger):
    a_raw_lot_feeding_sixty_mixes(ledger)

    assert ledger.verify().intact


def test_a_snapshot_altered_by_hand_is_named_though_every_chain_is_intact(container, ledger):
    """Someone gives the beef back its weight in the snapshot the ledger loads it from:
    the next mix could then draw kilograms that were already used."""
    raw = a_raw_lot_feeding_sixty_mixes(ledger)
    with superuser(container) as conn:
        state = conn.execute(
            SQL("SELECT state FROM {} WHERE originator_id = %s").format(
                snapshots_table(container, ledger)
            ),
            (raw.id,),
        ).fetchone()[0]
        assert b'"73.5"' in bytes(state)  # 49 draws of 1.5 kg by version 50
        conn.execute(
            SQL("UPDATE {} SET state = %s WHERE originator_id = %s").format(
                snapshots_table(container, ledger)
            ),
            (bytes(state).replace(b'"73.5"', b'"0.0"'), raw.id),
        )
    ledger.repository.cache = None  # a new process: nothing of the lot in memory
    # The 11 draws after version 50 are all the lot now seems to have given.
    assert ledger.get_lot(raw.id).consumed_kg == Decimal("16.5")

    result = ledger.verify()

    assert not result.intact
    [finding] = result.findings
    assert finding.position == row_of(container, raw.id, 50)["notification_id"]
    assert "the snapshot of Lot 'RAW-BEEF-SNAP' at version 50" in finding.what
    assert "differs from its events" in finding.what


def test_a_snapshot_for_a_version_its_stream_never_had_is_named(container, ledger):
    raw = a_raw_lot_feeding_sixty_mixes(ledger)
    with superuser(container) as conn:
        conn.execute(
            SQL(
                "INSERT INTO {table} (originator_id, originator_version, topic, state)"
                " SELECT originator_id, 500, topic, state FROM {table} WHERE originator_id = %s"
            ).format(table=snapshots_table(container, ledger)),
            (raw.id,),
        )

    result = ledger.verify()

    assert [f.what for f in result.findings] == [
        f"the snapshot of stream {raw.id} at version 500: its stream has no event at that"
        " version"
    ]


def test_a_snapshot_whose_events_were_garbled_is_named_and_verify_still_answers(
    container, ledger
):
    """An event made unreadable under a snapshot: the chains name the event, and the
    snapshot's check says it cannot replay rather than failing the whole verification."""
    raw = a_raw_lot_feeding_sixty_mixes(ledger)
    row = consumed_row(container, raw.id, version=2)
    with superuser(container) as conn:
        conn.execute(
            SQL("UPDATE {} SET state = %s WHERE notification_id = %s").format(
                events_table(container)
            ),
            (b"not json", row["notification_id"]),
        )

    result = ledger.verify()

    assert [(f.position, f.what.rsplit(": ", 1)[-1]) for f in result.findings] == [
        (row["notification_id"], "altered (its content no longer matches its hash)"),
        (row_of(container, raw.id, 50)["notification_id"], "its events cannot be replayed"),
    ]
