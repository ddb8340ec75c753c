"""The ledger application: load aggregates, call them, save everything touched at once."""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from typing import Any, ClassVar, TypeVar
from uuid import UUID

from eventsourcing.application import (
    AggregateNotFoundError,
    Application,
    ProcessingEvent,
    Recording,
)
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import (
    IntegrityError,
    JSONTranscoder,
    Mapper,
    OperationalError,
    StoredEvent,
    Transcoder,
    Transcoding,
)

from ledger import hash_chain
from ledger.commands import Committed, InputRef, NewLot, NewQcDecision
from ledger.errors import (
    ConcurrencyConflict,
    DuplicateInput,
    EmailAlreadyRegistered,
    LotCodeAlreadyExists,
    LotNotFound,
    SelfConsumption,
    UserNotFound,
)
from ledger.event_store import forbid_rewrites
from ledger.history import HistoryEntry, LotHistory
from ledger.ids import new_id
from ledger.lot import Lot, LotCode, QcRecord
from ledger.mapper import LedgerMapper
from ledger.transcoder import TaggingJSONTranscoder
from ledger.user import User, UserEmail
from ledger.values import QcDecision

T = TypeVar("T")
# Runs a blocking call off the event loop: the API passes its own thread pool.
RunBlocking = Callable[[Callable[[], Any]], Awaitable[Any]]


async def _in_default_executor(call: Callable[[], T]) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, call)


# Many requests consuming one parent conflict on its version; each round lets at least
# one of them through, so the bound must exceed the concurrency we expect on one lot.
MAX_ATTEMPTS = 40


def replay(aggregate: Any, events: Iterable[Any]) -> Any:
    """The library's `project_aggregate`, less its per-event runtime Protocol assertion,
    which on Python 3.11 costs as much as applying the event: half the time of loading a
    raw lot that has fed forty batches since its last snapshot."""
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


class Ledger(Application[UUID]):
    name = "ledger"
    # Snapshots are a cache, not history: a user logs in every shift and a raw lot may
    # feed a thousand batches, and loading either must not replay all of it each time.
    snapshotting_intervals: ClassVar = {User: 20, Lot: 50}
    snapshotting_projectors: ClassVar = {User: replay, Lot: replay}

    def construct_mapper(self) -> Mapper[UUID]:
        transcoder = self.construct_transcoder()
        return self.factory.mapper(transcoder=transcoder, mapper_class=LedgerMapper)

    def construct_transcoder(self) -> Transcoder:
        transcoder = TaggingJSONTranscoder()
        self.register_transcodings(transcoder)
        return transcoder

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        transcoder.register(QcRecordAsDict())

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        super().__init__(env)
        self._turns = _Turns()
        # Called with the events of every save, once they are committed (e.g. metrics).
        self.on_commit: list[Callable[[list[object]], None]] = []
        # The group-commit recorder takes a raw lot's events straight from its caller.
        self._group_commits = hasattr(self.recorder, "insert_events_async")
        datastore = getattr(self.recorder, "datastore", None)
        if datastore is not None:
            forbid_rewrites(datastore, self.recorder.events_table_name)  # type: ignore[attr-defined]
            if self.snapshots is not None:
                snapshots = self.snapshots.recorder.events_table_name  # type: ignore[attr-defined]
                forbid_rewrites(datastore, snapshots, "snapshots")

    def close(self) -> None:
        close_writer = getattr(self.recorder, "close_writer", None)
        if close_writer is not None:
            close_writer()
        super().close()

    # --- lots ----------------------------------------------------------------------------

    def register_lot(self, new: NewLot, *, actor_id: UUID | None) -> Committed[Lot]:
        if not new.inputs and self._group_commits:
            return self._register_raw_lot(new, actor_id)
        return self._register_by_saving(new, actor_id)

    async def register_lot_async(
        self,
        new: NewLot,
        *,
        actor_id: UUID | None,
        run_blocking: RunBlocking = _in_default_executor,
    ) -> Committed[Lot]:
        """`register_lot` for a caller on an event loop. A lot made of no other lots needs
        nothing loaded: it is built on the loop's own thread and awaits the group commit
        there. A lot with inputs loads its parents, and a clash must be told apart from a
        taken code: both run through `run_blocking`."""
        if new.inputs or not self._group_commits:
            return await run_blocking(partial(self.register_lot, new, actor_id=actor_id))
        raw = self._raw_lot(new, actor_id)
        append = self.recorder.insert_events_async  # type: ignore[attr-defined]
        try:
            try:
                ids = await append(raw.stored)
            except OperationalError:
                ids = await append(raw.stored)  # see _register_raw_lot
        except IntegrityError:
            return await run_blocking(partial(self._after_raw_clash, new, raw))
        return self._raw_lot_committed(raw, ids)

    def _register_raw_lot(self, new: NewLot, actor_id: UUID | None) -> Committed[Lot]:
        """A lot made of no other lots: nothing to load, nothing to retry against, so its
        events go straight to the group commit. The library's `save` around that append
        (its bookkeeping for process applications and snapshots, neither due for a new
        lot) cost a fifth of a registration's CPU from sixteen threads."""
        raw = self._raw_lot(new, actor_id)
        try:
            try:
                ids = self.recorder.insert_events(raw.stored)
            except OperationalError:
                # The connection broke: before the commit, and nothing was recorded, or
                # after it, and only the answer was lost. The same events once more tell
                # which: they commit now, or clash with themselves below, whichever order
                # the database sees the two in. A database still away fails this try too.
                ids = self.recorder.insert_events(raw.stored)
        except IntegrityError:
            return self._after_raw_clash(new, raw)
        return self._raw_lot_committed(raw, ids)

    def _raw_lot(self, new: NewLot, actor_id: UUID | None) -> _RawLot:
        lot_id = new.lot_id or new_id()
        at = Lot.Registered.create_timestamp()  # one registration, one instant
        registered = Lot.registered(id=lot_id, timestamp=at, **_registration(new, [], actor_id))
        claimed = LotCode.claimed(
            lot_code=new.lot_code, lot_id=lot_id, actor_id=actor_id, timestamp=at
        )
        stored = [self.mapper.to_stored_event(e) for e in (registered, claimed)]
        return _RawLot(registered, claimed, stored, actor_id)

    def _after_raw_clash(self, new: NewLot, raw: _RawLot) -> Committed[Lot]:
        """This try recorded nothing. Who holds the code decides: this very lot (an earlier
        try committed), another lot (refused without appending again: a clash sends the
        writer's whole batch down its slower path) or no lot (some other clash: retried,
        with the same lot id so that a retry cannot register it twice)."""
        own = self._own_commit(new.lot_code, raw.registered.mutate(None), raw.events)
        if own is not None:
            return own
        lot_id = raw.registered.originator_id
        return self._register_by_saving(replace(new, lot_id=lot_id), raw.actor_id)

    def _raw_lot_committed(self, raw: _RawLot, ids: Sequence[int] | None) -> Committed[Lot]:
        # Both aggregates are at version 1: no snapshot is due (see snapshotting_intervals).
        if self.repository.cache and not self.repository.fastforward:
            for event in raw.events:
                aggregate = event.mutate(None)
                self.repository.cache.put(aggregate.id, aggregate)
        self._announce(raw.events)
        assert ids, "a committed append has positions"
        return RawLotCommitted(raw.registered, max(ids))

    def _register_by_saving(self, new: NewLot, actor_id: UUID | None) -> Committed[Lot]:
        lot_id = new.lot_id or new_id()
        self._check_inputs_refer_to_others(new, lot_id)

        broken: list[OperationalError] = []

        def attempt() -> Committed[Lot]:
            # No look-up of the code first: the claim's insert is what decides, atomically.
            parents = [(self._input_lot(ref), ref) for ref in new.inputs]
            _check_parents_distinct(parents)
            lot, claim = _new_lot(new, lot_id, parents, actor_id)
            for parent, ref in parents:
                parent.consume(
                    child_lot_id=lot_id, quantity_kg=ref.quantity_used_kg, actor_id=actor_id
                )
            aggregates = [lot, claim, *(p for p, _ in parents)]
            events = [e for a in aggregates for e in a.pending_events]
            try:
                return Committed(lot, self._save(*aggregates), {"event": events[0]})
            except OperationalError as error:
                # The connection broke before the commit (nothing was recorded) or after
                # it (only the answer was lost). Told as 503, the operator would register
                # the mix again under a new code and draw its inputs twice. The code's
                # claim tells which; a database still away fails this look-up too.
                own = self._own_commit(new.lot_code, lot, events)
                if own is not None:
                    return own
                if broken:
                    raise
                broken.append(error)
                return attempt()  # nothing was recorded: once more, on a new connection

        def on_conflict() -> None:
            if self.lot_code_taken(new.lot_code):
                raise LotCodeAlreadyExists(new.lot_code)

        # Registrations consuming the same parent in this process take turns rather than
        # race: racing, a request that lost a few times keeps losing to fresh ones.
        with self._turns.hold(ref.reference for ref in new.inputs):
            return _retrying(attempt, on_conflict)

    def record_qc_decision(
        self, new: NewQcDecision, *, actor_id: UUID | None
    ) -> Committed[Lot]:
        decision_id = new_id()
        Lot.check_notes(new.decision, new.notes)

        def attempt() -> Committed[Lot]:
            lot = self.get_lot(new.lot_id)
            lot.record_qc_decision(
                decision_id=decision_id,
                decision=new.decision,
                qc_gate_id=new.qc_gate_id,
                operator_id=new.operator_id,
                notes=new.notes,
                temperature_c=new.temperature_c,
                digital_signature=new.digital_signature,
                actor_id=actor_id,
            )
            recorded = lot.pending_events[-1]
            return Committed(lot, self._save(lot), {"decision_id": decision_id, "event": recorded})

        with self._turns.hold([str(new.lot_id)]):
            return _retrying(attempt)

    def get_lot(self, lot_id: UUID) -> Lot:
        try:
            lot = self._get(lot_id)
        except AggregateNotFoundError:
            lot = None
        if not isinstance(lot, Lot):  # an id of some other aggregate is no lot either
            raise LotNotFound(str(lot_id))
        return lot

    def find_lot_by_code(self, lot_code: str) -> Lot | None:
        try:
            claim: LotCode = self._get(LotCode.id_for(lot_code))
        except AggregateNotFoundError:
            return None
        return self._get(claim.lot_id)

    # --- audit ---------------------------------------------------------------------------

    def lot_history(self, lot_code: str, as_of: datetime | None = None) -> LotHistory:
        """The lot's events as recorded, with their hashes; up to `as_of` when given."""
        try:
            claim: LotCode = self._get(LotCode.id_for(lot_code))
        except AggregateNotFoundError:
            raise LotNotFound(lot_code) from None
        with self._datastore.get_connection() as conn:
            chained = hash_chain.stream(
                conn, self._datastore.schema, self.recorder.events_table_name, claim.lot_id  # type: ignore[attr-defined]
            )
        entries = []
        for c in chained:
            event = self.mapper.to_domain_event(
                StoredEvent(c.originator_id, c.version, c.topic, c.state)
            )
            if as_of is not None and event.timestamp > as_of:
                break
            entries.append(HistoryEntry.of(event, c))
        return LotHistory(claim.lot_id, lot_code, entries)

    def digest(self) -> hash_chain.Digest:
        with self._datastore.get_connection() as conn:
            return hash_chain.digest(
                conn, self._datastore.schema, self.recorder.events_table_name  # type: ignore[attr-defined]
            )

    def verify(self, against: hash_chain.Digest | None = None) -> hash_chain.Verification:
        with self._datastore.get_connection() as conn:
            verification = hash_chain.verify(
                conn, self._datastore.schema, self.recorder.events_table_name, against  # type: ignore[attr-defined]
            )
            forged = self._snapshots_unlike_their_events(conn)
        if not forged:
            return verification
        findings = sorted([*verification.findings, *forged], key=lambda f: f.position)
        return replace(verification, findings=findings)

    def _snapshots_unlike_their_events(self, conn: Any) -> list[hash_chain.Finding]:
        """A snapshot is only a cache, but loading from it skips the events before it: one
        changed in the database would change the state that invariants are checked against
        (the kg a lot has left, its QC status) while every chain stays intact. So each is
        compared with a replay of its stream's events up to its version."""
        if self.snapshots is None:
            return []
        findings = []
        for position, oid, version, topic, state in hash_chain.snapshots(
            conn,
            self._datastore.schema,
            self.snapshots.recorder.events_table_name,  # type: ignore[attr-defined]
            self.recorder.events_table_name,  # type: ignore[attr-defined]
        ):
            where = f"the snapshot of stream {oid} at version {version}"
            if position is None:
                findings.append(
                    hash_chain.Finding(0, f"{where}: its stream has no event at that version")
                )
                continue
            try:
                replayed = replay(None, self.events.get(oid, lte=version))
            except Exception:  # noqa: BLE001 - an event the chains already name as altered
                findings.append(
                    hash_chain.Finding(position, f"{where}: its events cannot be replayed")
                )
                continue
            name = getattr(replayed, "lot_code", None) or getattr(replayed, "email", None)
            if name is not None:
                where = f"the snapshot of {type(replayed).__name__} {name!r} at version {version}"
            try:
                snapshot = self.mapper.to_domain_event(StoredEvent(oid, version, topic, state))
                loaded = snapshot.mutate(None)
            except Exception:  # noqa: BLE001 - whatever it holds, it is not what was taken
                loaded = None
            if loaded is None or loaded.__dict__ != replayed.__dict__:
                findings.append(
                    hash_chain.Finding(
                        position, f"{where}: differs from its events (altered by hand)"
                    )
                )
        return findings

    @property
    def _datastore(self) -> Any:
        return self.recorder.datastore  # type: ignore[attr-defined]

    def lot_code_taken(self, lot_code: str) -> bool:
        return self._claimant(lot_code) is not None

    def _own_commit(self, lot_code: str, lot: Lot, events: list[Any]) -> Committed[Lot] | None:
        """After a try whose outcome is unknown, who holds the code tells: this very lot
        (the try committed, only its answer was lost), another lot (refused), or none
        (nothing was recorded: None). `events` are the try's, its registration first."""
        claimant = self._claimant(lot_code)
        if claimant == lot.id:
            # Others may have used the lot since: it is not put in the cache.
            self._announce(events)
            return Committed(lot, self.recorder.max_notification_id() or 0, {"event": events[0]})
        if claimant is not None:
            raise LotCodeAlreadyExists(lot_code) from None
        return None

    def _claimant(self, lot_code: str) -> UUID | None:
        """The id of the lot that holds the code, if any lot does."""
        try:
            claim: LotCode = self._get(LotCode.id_for(lot_code))
        except AggregateNotFoundError:
            return None
        return claim.lot_id

    def _input_lot(self, ref: InputRef) -> Lot:
        lot: Lot | None
        if ref.lot_id is not None:
            try:
                lot = self.get_lot(ref.lot_id)
            except LotNotFound:
                lot = None
            if lot is not None and ref.lot_code is not None and lot.lot_code != ref.lot_code:
                lot = None
        else:
            lot = self.find_lot_by_code(ref.lot_code or "")
        if lot is None:
            raise LotNotFound(ref.reference, as_input=True)
        return lot

    @staticmethod
    def _check_inputs_refer_to_others(new: NewLot, lot_id: UUID) -> None:
        seen: set[object] = set()
        for ref in new.inputs:
            if ref.lot_id == lot_id or ref.lot_code == new.lot_code:
                raise SelfConsumption
            key = ref.lot_id if ref.lot_id is not None else ref.lot_code
            if key in seen:
                raise DuplicateInput(ref.reference)
            seen.add(key)

    # --- users ---------------------------------------------------------------------------

    def register_user(  # noqa: PLR0913
        self,
        *,
        email: str,
        full_name: str | None,
        role: str,
        password_hash: str | None,
        actor_id: UUID | None,
        user_id: UUID | None = None,
    ) -> Committed[User]:
        user = User(
            id=user_id or new_id(),
            email=email.strip(),
            full_name=full_name,
            role=role,
            password_hash=password_hash,
            actor_id=actor_id,
        )
        claim = UserEmail(email=email, user_id=user.id, actor_id=actor_id)
        try:
            return Committed(user, self._save(user, claim))
        except IntegrityError:
            raise EmailAlreadyRegistered(email) from None

    def find_user_by_email(self, email: str) -> User | None:
        try:
            claim: UserEmail = self._get(UserEmail.id_for(email))
        except AggregateNotFoundError:
            return None
        return self._get(claim.user_id)

    def get_user(self, user_id: UUID) -> User:
        try:
            user = self._get(user_id)
        except AggregateNotFoundError:
            raise UserNotFound from None
        if not isinstance(user, User):
            raise UserNotFound
        return user

    def record_login(self, user_id: UUID) -> Committed[User]:
        """Records a login; `extra["previous_login"]` is the login before this one."""

        def attempt() -> Committed[User]:
            user = self.get_user(user_id)
            previous = user.log_in()
            return Committed(user, self._save(user), {"previous_login": previous})

        return _retrying(attempt)

    def change_role(self, user_id: UUID, role: str, *, actor_id: UUID | None) -> Committed[User]:
        return self._update_user(user_id, lambda u: u.change_role(role, actor_id=actor_id))

    def change_password(
        self, user_id: UUID, password_hash: str, *, actor_id: UUID | None
    ) -> Committed[User]:
        return self._update_user(
            user_id, lambda u: u.change_password(password_hash, actor_id=actor_id)
        )

    def deactivate_user(self, user_id: UUID, *, actor_id: UUID | None) -> Committed[User]:
        return self._update_user(user_id, lambda u: u.deactivate(actor_id=actor_id))

    def _update_user(self, user_id: UUID, change: Callable[[User], None]) -> Committed[User]:
        def attempt() -> Committed[User]:
            user = self.get_user(user_id)
            change(user)
            return Committed(user, self._save(user))

        return _retrying(attempt)

    # --- persistence ---------------------------------------------------------------------

    def _get(self, aggregate_id: UUID) -> Any:
        return self.repository.get(aggregate_id, projector_func=replay)

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[UUID]]:
        # The library tells events from aggregates with runtime Protocol checks, which on
        # Python 3.11 cost more than encoding the events. The ledger saves aggregates only.
        if kwargs or not all(isinstance(obj, Aggregate) for obj in objs):
            return super().save(*objs, **kwargs)
        processing: ProcessingEvent[UUID] = ProcessingEvent()
        for aggregate in objs:
            processing.events.extend(aggregate.collect_events())
            processing.aggregates[aggregate.id] = aggregate
        recordings = self._record(processing)
        self._take_snapshots(processing)
        self._notify(recordings)
        return recordings

    def _save(self, *aggregates: object) -> int:
        recordings = self.save(*aggregates)  # type: ignore[arg-type]
        self._announce([r.domain_event for r in recordings])
        return max(r.notification.id for r in recordings)

    def _announce(self, committed: list[Any]) -> None:
        for listener in self.on_commit:
            listener(committed)


class QcRecordAsDict(Transcoding):
    """Lets a lot's QC history go into a snapshot."""

    type = QcRecord
    name = "flowviz_qc_record"

    def encode(self, obj: QcRecord) -> dict[str, Any]:
        return {
            "decision_id": obj.decision_id,
            "decision": str(obj.decision),
            "notes": obj.notes,
            "decided_at": obj.decided_at,
        }

    def decode(self, data: dict[str, Any]) -> QcRecord:
        return QcRecord(
            data["decision_id"], QcDecision(data["decision"]), data["notes"], data["decided_at"]
        )


@dataclass(slots=True)  # not frozen: a frozen one sets each field by a call (callgrind)
class _RawLot:
    """A lot made of no other lots: its two events, built and encoded, not yet appended."""

    registered: Lot.Registered
    claimed: LotCode.Claimed
    stored: list[StoredEvent]
    actor_id: UUID | None

    @property
    def events(self) -> list[Any]:
        return [self.registered, self.claimed]


class RawLotCommitted(Committed[Lot]):
    """A raw lot's registration, committed: its aggregate is built from the registration
    event (`extra["event"]`, as for every registration) when first asked for. A `POST`
    answers from the event itself and needs no aggregate."""

    def __init__(self, registered: Lot.Registered, position: int) -> None:
        # Frozen: set as the dataclass's own fields would be, in one step.
        self.__dict__.update(position=position, extra={"event": registered})

    def __getattr__(self, name: str) -> Any:
        if name != "aggregate":
            raise AttributeError(name)
        lot = self.extra["event"].mutate(None)
        object.__setattr__(self, "aggregate", lot)
        return lot


def _registration(
    new: NewLot, parents: list[tuple[Lot, InputRef]], actor_id: UUID | None
) -> dict[str, Any]:
    """A lot's registration as the `Registered` event's fields, its id and time aside."""
    return {
        "lot_code": new.lot_code,
        "lot_type": new.lot_type,
        "production_run_id": new.production_run_id,
        "phase_id": new.phase_id,
        "operator_id": new.operator_id,
        "weight_kg": new.weight_kg,
        "temperature_c": new.temperature_c,
        "metadata_json": new.metadata_json,
        "inputs": [
            {
                "lot_id": parent.id,
                "lot_code": parent.lot_code,
                "quantity_used_kg": ref.quantity_used_kg,
            }
            for parent, ref in parents
        ],
        "actor_id": actor_id,
    }


def _new_lot(
    new: NewLot, lot_id: UUID, parents: list[tuple[Lot, InputRef]], actor_id: UUID | None
) -> tuple[Lot, LotCode]:
    lot = Lot.register(id=lot_id, **_registration(new, parents, actor_id))
    return lot, LotCode.claim(lot_code=new.lot_code, lot_id=lot_id, actor_id=actor_id)


def _check_parents_distinct(parents: list[tuple[Lot, InputRef]]) -> None:
    """One parent named once by id and once by code is still listed twice."""
    seen: set[UUID] = set()
    for parent, ref in parents:
        if parent.id in seen:
            raise DuplicateInput(ref.reference)
        seen.add(parent.id)


class _Turns:
    """Striped locks: writers of the same lot in one process go one after the other."""

    STRIPES = 256

    def __init__(self) -> None:
        self._locks = [threading.Lock() for _ in range(self.STRIPES)]

    @contextlib.contextmanager
    def hold(self, keys: Iterable[str]) -> Iterator[None]:
        # Always in stripe order, so two writers holding several stripes cannot deadlock.
        stripes = sorted({hash(key) % self.STRIPES for key in keys})
        for stripe in stripes:
            self._locks[stripe].acquire()
        try:
            yield
        finally:
            for stripe in reversed(stripes):
                self._locks[stripe].release()


def _retrying(attempt: Callable[[], T], on_conflict: Callable[[], None] | None = None) -> T:
    """Optimistic concurrency: a version clash means someone else saved first; reload, retry."""
    for number in range(MAX_ATTEMPTS):
        try:
            return attempt()
        except IntegrityError:
            if on_conflict is not None:
                on_conflict()
            time.sleep(random.uniform(0, 0.002 * (number + 1)))  # noqa: S311 - jitter only
    raise ConcurrencyConflict


__all__ = ["Ledger", "RawLotCommitted"]
