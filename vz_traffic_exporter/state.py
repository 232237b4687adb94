"""The state file: the accumulator's totals and last raw readings on disk.

Written atomically: a temporary file in the same directory, fsync, rename,
fsync of the directory, so a crash leaves either the old or the new file and
never a torn one.  The format is JSON with a ``version`` (see
``accounting.STATE_VERSION``).  A missing file is a fresh start; a file that
cannot be read or understood is renamed aside (``<file>.bad-<UTC time>``),
logged, and the exporter starts fresh instead of refusing to run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from typing import Optional

from .accounting import Accumulator

log = logging.getLogger(__name__)


class StateFile:
    def __init__(self, path: str) -> None:
        self.path = path

    def load(self) -> Optional[Accumulator]:
        """The saved accumulator, or None for a fresh start (a bad file is put aside)."""
        try:
            with open(self.path, encoding="utf-8") as handle:
                text = handle.read()
        except FileNotFoundError:
            log.info("state file %s does not exist yet: starting from zero", self.path)
            return None
        except (OSError, UnicodeDecodeError) as err:
            self._put_aside(f"cannot be read: {err}")
            return None
        try:
            accumulator = Accumulator.from_state(json.loads(text))
        except ValueError as err:  # json.JSONDecodeError is a ValueError
            self._put_aside(str(err))
            return None
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
                err,
            )
            return
        log.error("state file %s %s; kept as %s, starting from zero", self.path, why, aside)

    def save(self, accumulator: Accumulator) -> None:
        """Write the accumulator atomically (raises OSError when it cannot)."""
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, mode=0o750, exist_ok=True)
        text = json.dumps(accumulator.to_state(), separators=(",", ":"))
        fd, tmp = tempfile.mkstemp(prefix=".state-", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o640)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def read_boot_id(procfs: str) -> Optional[str]:
    """The kernel's boot id under the procfs root, or None where it cannot be read."""
    path = os.path.join(procfs, "sys", "kernel", "random", "boot_id")
    try:
        with open(path, encoding="ascii") as handle:
            value = handle.read().strip()
    except (OSError, UnicodeDecodeError) as err:
        log.debug("no boot id at %s (%s): reboots are seen only as counter decreases", path, err)
        return None
    return value or None
