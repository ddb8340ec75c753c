"""New lot, decision and user ids: random version-4 UUIDs, never handed out twice."""

import os
import threading
from uuid import UUID

from ledger.ids import _IDS_PER_READ, new_id


def test_ids_are_version_4_uuids_in_the_rfc_variant():
    made = new_id()
    assert isinstance(made, UUID)
    assert made.version == 4
    assert made.variant == "specified in RFC 4122"


def test_ids_stay_distinct_across_many_blocks_of_randomness():
    ids = {new_id() for _ in range(10 * _IDS_PER_READ + 7)}
    assert len(ids) == 10 * _IDS_PER_READ + 7


def test_threads_drawing_at_once_never_share_an_id():
    per_thread, drawn = 2000, []

    def draw() -> None:
        drawn.extend(new_id() for _ in range(per_thread))

    threads = [threading.Thread(target=draw) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(drawn)) == 8 * per_thread


def test_a_forked_child_does_not_repeat_the_ids_its_parent_has_yet_to_hand_out():
    new_id()  # the parent holds a block it has barely used
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        os.write(write, b"".join(new_id().bytes for _ in range(8)))
        os._exit(0)
    os.close(write)
    child = os.read(read, 16 * 8)
    os.close(read)
    os.waitpid(pid, 0)
    parents = {new_id().bytes for _ in range(_IDS_PER_READ)}
    assert len(child) == 16 * 8
    assert not {child[i : i + 16] for i in range(0, len(child), 16)} & parents
