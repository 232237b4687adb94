"""Raw kernel readings -> monotonic totals.  The only state of the exporter.

A raw counter (a rule, a set element, a kernel entry) is identified by its
source and a stable ``counter`` key; a series by its labels.  Each read adds
the growth of every raw counter to the series that owns it now:

- first sight of a counter: everything it holds is new;
- a value below the last one: the kernel counter was reset (rules re-created,
  ``iptables -Z``, reboot); the new value is what was counted since, so it is
  added whole and the reset is counted;
- a new *epoch*: the source stamps each incarnation of a counter (a chain
  re-created, a table zeroed), so a reset is seen even when the new value is
  already above the old one;
- a new boot (:meth:`boot`): every kernel counter started again from zero;
- a narrow packet counter (32 bits in vznetstat) below its last value while
  the bytes grew has wrapped, not reset;
- a counter we created ourselves starts at zero (:meth:`started`), so all of
  it is added even if it has already passed the old value;
- a counter missing from a complete read is forgotten, so if it comes back it
  is new.

Totals never decrease.  An address that moves to another container keeps its
kernel counter; its growth from then on goes to the new owner's series, and
the old owner's series keeps its total.  A series is kept while it is seen,
and for ``retention`` seconds after (:meth:`expire`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple, Optional, Union

STATE_VERSION = 2

SeriesKey = tuple[str, ...]
CounterKey = tuple[Union[str, int], ...]  # a raw counter's identity within its source
Epoch = Optional[int]


class Observation(NamedTuple):
    counter: CounterKey
    series: Optional[SeriesKey]  # None: an address nobody owns now; tracked, not totalled
    packets: int
    bytes: int
    packet_bits: Optional[int] = None  # the packet counter wraps at 2**packet_bits
    epoch: Epoch = None  # the counter's incarnation, when the source can tell


class _Total:
    __slots__ = ("bytes", "packets", "seen")

    def __init__(self, packets: int, nbytes: int, seen: int) -> None:
        self.packets = packets
        self.bytes = nbytes
        self.seen = seen  # wall-clock time (s) of the last read that showed the series


class Accumulator:
    def __init__(self, boot_id: Optional[str] = None) -> None:
        self._last: dict[tuple[str, CounterKey], tuple[int, int, Epoch]] = {}
        self._totals: dict[SeriesKey, _Total] = {}
        self.resets: Counter[str] = Counter()
        self.boot_id = boot_id
        # Bumped by every change that growth alone does not repeat: a counter
        # seen, forgotten or reset, a series made or dropped.  A read that
        # leaves it alone needs no save: the kernel still holds that growth.
        self.changes = 0

    def update(self, source: str, observations: Iterable[Observation], now: Optional[float] = None) -> None:
        """Add one complete read of a source."""
        stamp = int(time.time() if now is None else now)
        seen = set()
        resets = self.resets[source]
        for obs in observations:
            key = (source, obs.counter)
            seen.add(key)
            last = self._last.get(key)
            if last is None:
                grew = (obs.packets, obs.bytes)
                self.changes += 1
            elif last[2] is not None and obs.epoch is not None and last[2] != obs.epoch:
                grew = (obs.packets, obs.bytes)  # a new incarnation of the counter
                self.resets[source] += 1
            elif obs.packets < last[0] and obs.bytes > last[1] and obs.packet_bits:
                # Bytes grew but a narrow packet counter went down: it wrapped.
                grew = (obs.packets + (1 << obs.packet_bits) - last[0], obs.bytes - last[1])
            elif obs.packets < last[0] or obs.bytes < last[1]:
                grew = (obs.packets, obs.bytes)
                self.resets[source] += 1
            else:
                grew = (obs.packets - last[0], obs.bytes - last[1])
            self._last[key] = (obs.packets, obs.bytes, obs.epoch if obs.epoch is not None else _epoch(last))
            if obs.series is not None:
                total = self._totals.get(obs.series)
                if total is None:
                    self._totals[obs.series] = _Total(grew[0], grew[1], stamp)
                    self.changes += 1
                else:
                    total.packets += grew[0]
                    total.bytes += grew[1]
                    total.seen = stamp
        gone = [k for k in self._last if k[0] == source and k not in seen]
        for key in gone:
            del self._last[key]
        self.changes += len(gone) + self.resets[source] - resets

    def started(self, source: str, counter: CounterKey, epoch: Epoch = None) -> None:
        """A counter we have just created: it starts from zero."""
        if (source, counter) in self._last:
            self.resets[source] += 1  # it replaces one we were reading
        self._last[(source, counter)] = (0, 0, epoch)
        self.changes += 1

    def restamped(self, source: str, counter: CounterKey, epoch: Epoch) -> None:
        """We gave a counter a new epoch without resetting it: not a reset."""
        last = self._last.get((source, counter))
        if last is not None:
            self._last[(source, counter)] = (last[0], last[1], epoch)
            self.changes += 1

    def boot(self, boot_id: Optional[str]) -> int:
        """Declare the kernel's boot id; a new boot resets every counter.  Returns resets absorbed."""
        if boot_id is None or boot_id == self.boot_id:
            return 0
        absorbed = 0
        if self.boot_id is not None:
            for source, _ in self._last:
                self.resets[source] += 1
                absorbed += 1
            self._last.clear()
        self.boot_id = boot_id
        self.changes += 1
        return absorbed

    def expire(self, retention: float, now: Optional[float] = None) -> int:
        """Drop the series not seen for longer than retention; returns how many."""
        now = time.time() if now is None else now
        gone = [series for series, total in self._totals.items() if now - total.seen > retention]
        for series in gone:
            del self._totals[series]
        self.changes += len(gone)
        return len(gone)

    def total(self, series: SeriesKey) -> tuple[int, int]:
        """(packets, bytes) accumulated for a series."""
        total = self._totals.get(series)
        return (0, 0) if total is None else (total.packets, total.bytes)

    def series(self, kind: str) -> Iterator[SeriesKey]:
        """Every retained series whose key starts with kind."""
        return (key for key in self._totals if key[0] == kind)

    # -- persistence ---------------------------------------------------------
    #
    # Flat rows keep the file small and quick to write at 10,000 containers:
    #   counters: [source, packets, bytes, epoch, *counter key]
    #   series:   [packets, bytes, last seen (s), *series key]

    def to_state(self) -> dict[str, Any]:
        """A JSON-ready, versioned copy of everything the accumulator knows."""
        return {
            "version": STATE_VERSION,
            "boot_id": self.boot_id,
            "counters": [
                [source, p, b, epoch, *counter] for (source, counter), (p, b, epoch) in self._last.items()
            ],
            "series": [[t.packets, t.bytes, t.seen, *series] for series, t in self._totals.items()],
            "resets": dict(self.resets),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Accumulator:
        """The accumulator saved by :meth:`to_state` (ValueError if it is not one)."""
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            version = state.get("version") if isinstance(state, dict) else None
            raise ValueError(f"state format version {version!r}, this exporter reads version {STATE_VERSION}")
        try:
            boot_id = state["boot_id"]
            acc = cls(None if boot_id is None else str(boot_id))
            for row in state["counters"]:
                source, packets, nbytes, epoch = row[:4]
                counter = tuple(row[4:])
                if not isinstance(source, str) or not counter or not all(map(_is_part, counter)):
                    raise ValueError(f"{row!r} is not a counter")
                acc._last[(source, counter)] = (
                    _count(packets),
                    _count(nbytes),
                    None if epoch is None else _count(epoch),
                )
            for row in state["series"]:
                series = tuple(row[3:])
                if not series or not all(isinstance(part, str) for part in series):
                    raise ValueError(f"{row!r} is not a series")
                acc._totals[series] = _Total(_count(row[0]), _count(row[1]), _count(row[2]))
            acc.resets.update({str(k): _count(v) for k, v in state["resets"].items()})
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ValueError(f"malformed state: {err}") from None
        return acc


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{value!r} is not a counter value")
    return value


def _is_part(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _epoch(last: Optional[tuple[int, int, Epoch]]) -> Epoch:
    return None if last is None else last[2]
