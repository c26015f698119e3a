"""One live driver per run directory: an OS lock on RUN_DIR/driver.lock, held for the driver's life.

The kernel releases an `flock` when its process dies however it dies (kill -9 included), so a
killed run can always be resumed, and a second driver is refused while the first one lives.
Readers (`status`, `pareto`, `report`, `export`) never take it; `driver_running` only peeks.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from cosearch.core.errors import RunDirError

LOCK_NAME = "driver.lock"
PEEK_RETRIES = 5


class RunLock:
    """The driver's lock on one run directory; `acquire` raises RunDirError when another holds it."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self._fd is not None:
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as error:
            raise RunDirError(
                f"{self.path.parent}: cannot create {LOCK_NAME} to drive this run ({error.strerror})"
            ) from None
        try:
            for attempt in range(PEEK_RETRIES):  # a reader's `driver_running` peek holds it for microseconds
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if attempt == PEEK_RETRIES - 1:
                        raise
                    time.sleep(0.05)
        except OSError as error:
            os.close(fd)
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise RunDirError(f"{self.path}: cannot lock the run directory ({error.strerror})") from None
            raise RunDirError(
                f"{self.path.parent} is being driven by another cosearch process ({_holder(self.path)}); "
                f"one driver per run: wait for it, or stop it and `cosearch resume {self.path.parent}`"
            ) from None
        # Who holds it, for the refusal message of the next driver; the lock itself is the flock.
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since_s": time.time()}).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["since_s"]))
        return f"pid {info['pid']} on {info['host']}, since {since}"
    except (OSError, ValueError, KeyError, TypeError):
        return "its pid unknown"


def driver_running(run_dir: str | Path) -> bool:
    """Whether some process holds the run's driver lock now (False when there is no lock file)."""
    path = Path(run_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # also drops the shared lock just taken
    return False
