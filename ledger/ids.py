"""Random (version 4) ids drawn from the OS's random source in blocks.

`uuid.uuid4` asks the kernel for 16 bytes on every call, and CPython lets go of the
interpreter lock around that call: on a loaded event loop each new lot then waits for
whichever thread took the lock meanwhile. The bytes are the same kernel randomness, read
256 ids at a time.
"""

from __future__ import annotations

import os
import threading
from uuid import UUID

_IDS_PER_READ = 256
_lock = threading.Lock()
_block = b""
_offset = 0


def new_id() -> UUID:
    global _block, _offset
    with _lock:
        if _offset >= len(_block):
            _block, _offset = os.urandom(16 * _IDS_PER_READ), 0
        raw = _block[_offset : _offset + 16]
        _offset += 16
    return UUID(bytes=raw, version=4)


def _forget_block() -> None:
    # A forked child must not hand out the ids its parent has yet to hand out.
    global _block, _offset, _lock
    _lock = threading.Lock()
    _block, _offset = b"", 0


os.register_at_fork(after_in_child=_forget_block)
