"""Raw kernel readings -> monotonic totals.  The only state of the exporter.

A raw counter (a rule, a set element, a kernel entry) is identified by its
source and a stable ``counter`` key; a series by its labels.  Each read adds
the growth of every raw counter to the series that owns it now:

- first sight of a counter: everything it holds is new;
- a value below the last one: the kernel counter was reset (rules re-created,
  ``iptables -Z``, reboot); the new value is what was counted since, so it is
  added whole and the reset is counted;
- a narrow packet counter (32 bits in vznetstat) below its last value while
  the bytes grew has wrapped, not reset;
- a counter we created ourselves starts at zero (:meth:`started`), so all of
  it is added even if it has already passed the old value;
- a counter missing from a complete read is forgotten, so if it comes back it
  is new.

Totals never decrease.  An address that moves to another container keeps its
kernel counter; its growth from then on goes to the new owner's series.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Optional

STATE_VERSION = 1

SeriesKey = tuple[str, ...]


@dataclass(frozen=True)
class Observation:
    counter: Hashable
    series: Optional[SeriesKey]  # None: an address nobody owns now; tracked, not totalled
    packets: int
    bytes: int
    packet_bits: Optional[int] = None  # the packet counter wraps at 2**packet_bits


class Accumulator:
    def __init__(self) -> None:
        self._last: dict[tuple[str, Hashable], tuple[int, int]] = {}
        self._totals: dict[SeriesKey, tuple[int, int]] = {}
        self.resets: Counter[str] = Counter()

    def update(self, source: str, observations: Iterable[Observation]) -> None:
        """Add one complete read of a source."""
        seen = set()
        for obs in observations:
            key = (source, obs.counter)
            seen.add(key)
            last = self._last.get(key)
            if last is None:
                grew = (obs.packets, obs.bytes)
            elif obs.packets < last[0] and obs.bytes > last[1] and obs.packet_bits:
                # Bytes grew but a narrow packet counter went down: it wrapped.
                grew = (obs.packets + (1 << obs.packet_bits) - last[0], obs.bytes - last[1])
            elif obs.packets < last[0] or obs.bytes < last[1]:
                grew = (obs.packets, obs.bytes)
                self.resets[source] += 1
            else:
                grew = (obs.packets - last[0], obs.bytes - last[1])
            self._last[key] = (obs.packets, obs.bytes)
            if obs.series is not None:
                packets, nbytes = self._totals.get(obs.series, (0, 0))
                self._totals[obs.series] = (packets + grew[0], nbytes + grew[1])
        for key in [k for k in self._last if k[0] == source and k not in seen]:
            del self._last[key]

    def started(self, source: str, counter: Hashable) -> None:
        """A counter we have just created: it starts from zero."""
        self._last[(source, counter)] = (0, 0)

    def total(self, series: SeriesKey) -> tuple[int, int]:
        """(packets, bytes) accumulated for a series."""
        return self._totals.get(series, (0, 0))

    # -- persistence ---------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """A JSON-ready, versioned copy of everything the accumulator knows."""
        return {
            "version": STATE_VERSION,
            "last": [
                [source, list(_as_tuple(counter)), p, b] for (source, counter), (p, b) in self._last.items()
            ],
            "totals": [[list(series), p, b] for series, (p, b) in self._totals.items()],
            "resets": dict(self.resets),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Accumulator:
        """The accumulator saved by :meth:`to_state` (ValueError if it is not one)."""
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise ValueError(f"not a version {STATE_VERSION} accumulator state")
        acc = cls()
        try:
            for source, counter, packets, nbytes in state["last"]:
                acc._last[(str(source), tuple(counter))] = (int(packets), int(nbytes))
            for series, packets, nbytes in state["totals"]:
                acc._totals[tuple(str(part) for part in series)] = (int(packets), int(nbytes))
            acc.resets.update({str(k): int(v) for k, v in state["resets"].items()})
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ValueError(f"malformed accumulator state: {err}") from None
        return acc


def _as_tuple(counter: Hashable) -> tuple[Any, ...]:
    return counter if isinstance(counter, tuple) else (counter,)
