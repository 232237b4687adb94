"""The state file: the accumulator's totals and last raw readings on disk.

Written atomically: a temporary file in the same directory, fsync, rename,
fsync of the directory, so a crash leaves either the old or the new file and
never a torn one.  The format is JSON with a ``version`` (see
``accounting.STATE_VERSION``).  A missing file is a fresh start; a file that
cannot be read or understood is renamed aside (``<file>.bad-<UTC time>``),
logged, and the exporter starts fresh instead of refusing to run; a file
with some bad rows loses those rows only (:meth:`Accumulator.from_state`).

Only our own regular file is ever read, replaced or moved: a directory, a
FIFO, a device or a symbolic link at the path is refused (:class:`NotOurs`).
Temporary files of ours that a killed exporter left behind are removed at
start.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import logging
import os
import stat
import tempfile
import time
from typing import Optional

from .accounting import Accumulator
from .files import FileError, describe, read_text

log = logging.getLogger(__name__)

MAX_SIZE = 512 << 20  # bytes: 100,000 containers take about 100 MiB


class NotOurs(OSError):
    """Something that is not a state file of ours stands at the state file's path."""

    def __str__(self) -> str:
        return str(self.strerror)


class StateFile:
    def __init__(self, path: str) -> None:
        self.path = path
        base = os.path.basename(path)
        self._directory = os.path.dirname(os.path.abspath(path))
        self._tmp_prefix, self._tmp_suffix = f".{base}.", ".tmp"

    def check(self) -> None:
        """Raise NotOurs unless the path is absent or a regular file (not through a symbolic link)."""
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            return
        except OSError as err:
            raise NotOurs(err.errno, f"state file {self.path}: {err.strerror}") from None
        if not stat.S_ISREG(mode):
            raise NotOurs(
                errno.EEXIST,
                f"state file {self.path} is {describe(mode)}, not a state file of ours: "
                "it is never read, replaced or moved (name another state.file)",
            )

    def clean_stale(self) -> int:
        """Remove the temporary files of saves that never finished (a kill during a save)."""
        removed = 0
        pattern = os.path.join(
            glob.escape(self._directory), glob.escape(self._tmp_prefix) + "*" + self._tmp_suffix
        )
        for path in glob.glob(pattern):
            with contextlib.suppress(OSError):
                if stat.S_ISREG(os.lstat(path).st_mode):
                    os.unlink(path)
                    removed += 1
        if removed:
            log.info("state file %s: removed %d temporary files of unfinished saves", self.path, removed)
        return removed

    def load(self) -> Optional[Accumulator]:
        """The saved accumulator, or None for a fresh start (a bad file is put aside).

        Raises NotOurs when the path holds something that is not ours.
        """
        self.check()
        self.clean_stale()
        try:
            text = read_text(self.path, MAX_SIZE, follow=False)
        except FileError as err:
            if err.errno == errno.ENOENT:
                log.info("state file %s does not exist yet: starting from zero", self.path)
                return None
            self._put_aside(f"cannot be read: {err}")
            return None
        except UnicodeDecodeError as err:
            self._put_aside(f"is not UTF-8 text: {err.reason} at byte {err.start}")
            return None
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as err:  # json.JSONDecodeError is a ValueError
            self._put_aside(f"is not JSON: {str(err)[:200]}")
            return None
        dropped: list[str] = []
        try:
            accumulator = Accumulator.from_state(data, dropped)
        except ValueError as err:
            self._put_aside(str(err))
            return None
        for why in dropped[:10]:
            log.error("state file %s: row dropped, its totals lost: %s", self.path, why)
        if len(dropped) > 10:
            log.error("state file %s: %d more rows dropped", self.path, len(dropped) - 10)
        log.info("state file %s loaded", self.path)
        return accumulator

    def _put_aside(self, why: str) -> None:
        aside = f"{self.path}.bad-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
        try:
            os.replace(self.path, aside)
        except OSError as err:
            log.error(
                "state file %s %s; could not move it aside (%s); starting from zero",
                self.path,
                why,
                err.strerror,
            )
            return
        log.error("state file %s %s; kept as %s, starting from zero", self.path, why, aside)

    def save(self, accumulator: Accumulator) -> None:
        """Write the accumulator atomically (raises OSError, with a message that says why, when it cannot)."""
        self.check()
        os.makedirs(self._directory, mode=0o750, exist_ok=True)
        text = json.dumps(accumulator.to_state(), separators=(",", ":")).encode()
        try:
            fd, tmp = tempfile.mkstemp(prefix=self._tmp_prefix, suffix=self._tmp_suffix, dir=self._directory)
        except OSError as err:
            if err.errno in (errno.ENOSPC, errno.EDQUOT):
                raise OSError(err.errno, self._no_room(len(text))) from None
            raise OSError(err.errno, f"cannot create a file in {self._directory}: {err.strerror}") from None
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o640)
            os.replace(tmp, self.path)
        except BaseException as err:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
                raise OSError(err.errno, self._no_room(len(text))) from None
            raise
        dir_fd = os.open(self._directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _no_room(self, size: int) -> str:
        try:
            current = os.lstat(self.path).st_size
        except OSError:
            current = 0
        return (
            f"no space left in {self._directory}: an atomic save writes the new state ({size} bytes) "
            f"beside the current file ({current} bytes) before replacing it"
        )


def read_boot_id(procfs: str) -> Optional[str]:
    """The kernel's boot id under the procfs root, or None where it cannot be read."""
    path = os.path.join(procfs, "sys", "kernel", "random", "boot_id")
    try:
        value = read_text(path, 4096, encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as err:
        log.debug("no boot id at %s (%s): reboots are seen only as counter decreases", path, err)
        return None
    return value or None
