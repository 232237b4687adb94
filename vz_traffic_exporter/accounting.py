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
  the bytes grew has wrapped, not reset, unless the last value was the one a
  saturated count stops at (2**31 - 1, Virtuozzo 9's vznetstat);
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
from collections.abc import Iterable
from typing import Any, NamedTuple, Optional, Union

STATE_VERSION = 2
# A 32-bit packet count read with json-c's json_object_get_int (Virtuozzo 9's vznetstat) stops
# here instead of wrapping: down from this value it was reset.
SATURATED = 2**31 - 1
RAW_LIMIT = 1 << 64  # a kernel counter's values
TOTAL_LIMIT = 1 << 96  # no total gets near this: a value beyond it in a state file is not one of ours
# The kinds of series the exporter keeps, with the number of parts of their keys.
SERIES_PARTS = {"ip": 5, "container": 6, "interface": 4}

SeriesKey = tuple[str, ...]
CounterKey = tuple[Union[str, int], ...]  # a raw counter's identity within its source
Epoch = Optional[int]
SeriesRow = tuple[SeriesKey, int, int]  # (series, packets, bytes)


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
        # Per source, every counter of its last read -> the observation of it
        # that was accounted.  A source that hands the same observation object
        # back for a counter that did not change (see the exporter) costs one
        # lookup per such counter: idle counters are most of a large node's.
        self._last: dict[str, dict[CounterKey, Observation]] = {}
        self._read_at: dict[str, int] = {}  # per source, the time of its last read
        self._totals: dict[SeriesKey, _Total] = {}
        self.resets: Counter[str] = Counter()
        self.boot_id = boot_id
        # Bumped by every change that growth alone does not repeat: a counter
        # seen, forgotten or reset, a series made or dropped.  A read that
        # leaves it alone needs no save: the kernel still holds that growth.
        self.changes = 0
        self.series_made = 0  # bumped when a series is made or dropped
        # kind -> (series_made, sorted rows, series -> its row), and the series that grew since
        self._rows: dict[str, tuple[int, list[SeriesRow], dict[SeriesKey, int]]] = {}
        self._dirty: dict[str, set[SeriesKey]] = {}

    def update(self, source: str, observations: Iterable[Observation], now: Optional[float] = None) -> None:
        """Add one complete read of a source."""
        stamp = int(time.time() if now is None else now)
        old = self._last.get(source, {})
        new: dict[CounterKey, Observation] = {}
        totals = self._totals
        resets = 0
        moved: list[Observation] = []
        for obs in observations:
            counter = obs.counter
            last = new[counter] if counter in new else old.get(counter)
            if last is obs:  # the very observation accounted last time: nothing grew
                new[counter] = obs
                continue
            if last is None:
                grew = (obs.packets, obs.bytes)
                self.changes += 1
            else:
                if last.series is not None and last.series != obs.series:
                    moved.append(last)  # its old series was last seen by the read before
                if last.epoch is not None and obs.epoch is not None and last.epoch != obs.epoch:
                    grew = (obs.packets, obs.bytes)  # a new incarnation of the counter
                    resets += 1
                elif (
                    obs.packets < last.packets
                    and obs.bytes > last.bytes
                    and obs.packet_bits
                    and last.packets != SATURATED
                ):
                    # Bytes grew but a narrow packet counter went down: it wrapped.  Down from
                    # SATURATED (Virtuozzo 9's vznetstat stops there) it can only have been reset.
                    grew = (obs.packets + (1 << obs.packet_bits) - last.packets, obs.bytes - last.bytes)
                elif obs.packets < last.packets or obs.bytes < last.bytes:
                    grew = (obs.packets, obs.bytes)
                    resets += 1
                else:
                    grew = (obs.packets - last.packets, obs.bytes - last.bytes)
            if obs.epoch is None and last is not None and last.epoch is not None:
                obs = obs._replace(epoch=last.epoch)  # keeps the epoch it was given
            new[counter] = obs
            if obs.series is not None:
                total = totals.get(obs.series)
                if total is None:
                    totals[obs.series] = _Total(grew[0], grew[1], stamp)
                    self.changes += 1
                    self.series_made += 1
                else:
                    total.packets += grew[0]
                    total.bytes += grew[1]
                    total.seen = stamp
                    if grew[0] or grew[1]:
                        dirty = self._dirty.get(obs.series[0])
                        if dirty is None:
                            dirty = self._dirty[obs.series[0]] = set()
                        dirty.add(obs.series)
        gone = old.keys() - new.keys()
        before = self._read_at.get(source)
        if before is not None:  # counters gone or moved to another series: theirs was last seen then
            self._seen([old[c] for c in gone], before)
            self._seen(moved, before)
        self._last[source] = new
        self._read_at[source] = stamp
        self.resets[source] += resets
        self.changes += len(gone) + resets

    def _seen(self, observations: Iterable[Observation], stamp: int) -> None:
        totals = self._totals
        for obs in observations:
            total = totals.get(obs.series) if obs.series is not None else None
            if total is not None and total.seen < stamp:
                total.seen = stamp

    def _touch(self) -> None:
        """Bring every series' last-seen time up to the last read of the counters that feed it.

        Reads set it only for counters that changed; this does it for the rest, where it is needed.
        """
        for source, counters in self._last.items():
            stamp = self._read_at.get(source)
            if stamp is not None:
                self._seen(counters.values(), stamp)

    def _set(self, source: str, counter: CounterKey, packets: int, nbytes: int, epoch: Epoch) -> None:
        counters = self._last.setdefault(source, {})
        last = counters.get(counter)
        counters[counter] = Observation(
            counter, None if last is None else last.series, packets, nbytes, None, epoch
        )

    def started(self, source: str, counter: CounterKey, epoch: Epoch = None) -> None:
        """A counter we have just created: it starts from zero."""
        if counter in self._last.get(source, {}):
            self.resets[source] += 1  # it replaces one we were reading
        self._set(source, counter, 0, 0, epoch)
        self.changes += 1

    def restamped(self, source: str, counter: CounterKey, epoch: Epoch) -> None:
        """We gave a counter a new epoch without resetting it: not a reset."""
        last = self._last.get(source, {}).get(counter)
        if last is not None:
            self._set(source, counter, last.packets, last.bytes, epoch)
            self.changes += 1

    def boot(self, boot_id: Optional[str]) -> int:
        """Declare the kernel's boot id; a new boot resets every counter.  Returns resets absorbed."""
        if boot_id is None or boot_id == self.boot_id:
            return 0
        absorbed = 0
        if self.boot_id is not None:
            self._touch()
            for source, counters in self._last.items():
                self.resets[source] += len(counters)
                absorbed += len(counters)
            self._last.clear()
        self.boot_id = boot_id
        self.changes += 1
        return absorbed

    def expire(self, retention: float, now: Optional[float] = None) -> int:
        """Drop the series not seen for longer than retention; returns how many."""
        now = time.time() if now is None else now
        self._touch()
        gone = [series for series, total in self._totals.items() if now - total.seen > retention]
        for series in gone:
            del self._totals[series]
        self.changes += len(gone)
        self.series_made += len(gone)
        return len(gone)

    def total(self, series: SeriesKey) -> tuple[int, int]:
        """(packets, bytes) accumulated for a series."""
        total = self._totals.get(series)
        return (0, 0) if total is None else (total.packets, total.bytes)

    def rows(self, kind: str) -> list[SeriesRow]:
        """(series, packets, bytes) of every retained series whose key starts with kind, sorted.

        Kept between calls: made again only when series came or went, else
        only the rows of the series that grew are.  The caller must not change the list.
        """
        cached = self._rows.get(kind)
        dirty = self._dirty.pop(kind, set())
        totals = self._totals
        if cached is None or cached[0] != self.series_made:
            keys = sorted(key for key in totals if key[0] == kind)
            rows = [(key, totals[key].packets, totals[key].bytes) for key in keys]
            self._rows[kind] = (self.series_made, rows, {key: i for i, key in enumerate(keys)})
            return rows
        _, rows, index = cached
        for key in dirty:
            total = totals[key]
            rows[index[key]] = (key, total.packets, total.bytes)
        return rows

    # -- persistence ---------------------------------------------------------
    #
    # Flat rows keep the file small and quick to write at 10,000 containers:
    #   counters: [source, packets, bytes, epoch, *counter key]
    #   series:   [packets, bytes, last seen (s), *series key]

    def to_state(self) -> dict[str, Any]:
        """A JSON-ready, versioned copy of everything the accumulator knows."""
        self._touch()
        return {
            "version": STATE_VERSION,
            "boot_id": self.boot_id,
            "counters": [
                [source, obs.packets, obs.bytes, obs.epoch, *counter]
                for source, counters in self._last.items()
                for counter, obs in counters.items()
            ],
            "series": [[t.packets, t.bytes, t.seen, *series] for series, t in self._totals.items()],
            "resets": dict(self.resets),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], dropped: Optional[list[str]] = None) -> Accumulator:
        """The accumulator saved by :meth:`to_state` (ValueError if it is not one).

        dropped: where to list the rows that are not understood, which are
        then left out (one bad row loses that row only); without it, a bad
        row is a ValueError.
        """
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            version = state.get("version") if isinstance(state, dict) else None
            raise ValueError(
                f"state format version {version!r:.40}, this exporter reads version {STATE_VERSION}"
            )
        boot_id = state.get("boot_id")
        if boot_id is not None and not isinstance(boot_id, str):
            raise ValueError(f"malformed state: boot_id {boot_id!r:.40} is not a string")
        acc = cls(boot_id)
        counters, series_rows, resets = (state.get(name) for name in ("counters", "series", "resets"))
        if (
            not isinstance(counters, list)
            or not isinstance(series_rows, list)
            or not isinstance(resets, dict)
        ):
            raise ValueError("malformed state: counters, series or resets missing")

        def bad(what: str) -> None:
            if dropped is None:
                raise ValueError(f"malformed state: {what}")
            dropped.append(what)

        for row in counters:
            try:
                source, packets, nbytes, epoch = row[:4]
                counter = tuple(row[4:])
                if not isinstance(source, str) or not counter or not all(map(_is_part, counter)):
                    raise ValueError("not a counter")
                values = _count(packets, RAW_LIMIT), _count(nbytes, RAW_LIMIT)
                stamp = None if epoch is None else _count(epoch, RAW_LIMIT)
            except (TypeError, ValueError) as err:
                bad(f"counter row {_shown(row)}: {err}")
                continue
            acc._set(source, counter, *values, stamp)
        for row in series_rows:
            try:
                series = tuple(row[3:])
                if not all(isinstance(part, str) for part in series) or SERIES_PARTS.get(series[0]) != len(
                    series
                ):
                    raise ValueError("not a series")
                total = _Total(_count(row[0]), _count(row[1]), _count(row[2]))
            except (TypeError, ValueError, IndexError) as err:
                bad(f"series row {_shown(row)}: {err}")
                continue
            acc._totals[series] = total
        for source, count in resets.items():
            try:
                acc.resets[str(source)] = _count(count)
            except ValueError as err:
                bad(f"resets of {_shown(source)}: {err}")
        return acc


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:120] + "..."


def _count(value: Any, limit: int = TOTAL_LIMIT) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < limit:
        raise ValueError(f"{_shown(value)} is not a counter value")
    return value


def _is_part(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
