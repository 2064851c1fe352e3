"""One writer per output: a lock file beside it, naming the holder.

Two runs writing one store (or one VCF) at once corrupt each other's work; the second
is refused at once with the holder's pid and host. A lock left by a killed run on this
host (its pid is gone) is taken over, so an interrupted job resumes as before. Locks
from another host are never guessed dead: the message says which file to delete.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path


class OutputLocked(RuntimeError):
    """Another live run holds the output."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


@contextlib.contextmanager
def output_lock(output):
    """Hold ``<output>.lock`` while writing `output`; raise OutputLocked if a live run does."""
    lock = Path(str(output).rstrip("/") + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(lock.read_text())
            except (OSError, ValueError):
                holder = {}
            if holder.get("host") == me["host"] and isinstance(holder.get("pid"), int) and not _alive(holder["pid"]):
                lock.unlink(missing_ok=True)  # left by a run that was killed: take it over
                continue
            raise OutputLocked(f"{output} is being written by pid {holder.get('pid', '?')} on "
                               f"{holder.get('host', '?')} (since {holder.get('since', '?')}): wait for it to "
                               f"finish; if that run is dead, delete {lock}") from None
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    else:
        raise OutputLocked(f"{lock}: could not take the lock (another run raced for it): retry")
    try:
        yield lock
    finally:
        lock.unlink(missing_ok=True)
