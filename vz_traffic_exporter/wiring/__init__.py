"""The rooms of one read, each with one job; :mod:`..exporter` runs them in turn.

- :mod:`.inventory`: who owns which address (discovery, its thread, conflicts);
- :mod:`.netfilter`: our netfilter objects or the operator's rules (backend
  choice, sync, read, which container owns which counter);
- :mod:`.kernel`: the kernel's own accounting (combining its sources, the
  Virtuozzo 9 classes made exclusive) and the host-side interfaces.

Each room reads through the runner it is given and adds what it read to the
one accumulator; none of them knows the others or the exporter.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from ..model import SourceStatus
from ..runner import CommandError

log = logging.getLogger(__name__)


@dataclass
class Steps:
    """Runs one source's step, logging its failure and timing it: a failing source is down, not fatal."""

    statuses: list[SourceStatus] = field(default_factory=list)

    def run(self, name: str, step: Callable[[], None]) -> bool:
        start = time.monotonic()
        try:
            step()
            ok = True
        except (CommandError, ValueError, OSError, RuntimeError) as err:
            log.error("source %s failed: %s", name, err)
            ok = False
        except Exception:  # a bug must not take the other sources down with it
            log.exception("source %s failed unexpectedly", name)
            ok = False
        self.statuses.append(SourceStatus(name, ok, time.monotonic() - start))
        return ok
