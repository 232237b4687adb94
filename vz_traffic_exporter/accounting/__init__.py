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
  the bytes grew has wrapped, not reset, if the bytes grew by at least
  MIN_PACKET a wrapped packet (no IP packet is shorter) and the last value was
  not the one a saturated count stops at (2**31 - 1, Virtuozzo 9's
  vznetstat); otherwise (a container restart whose counters grew past their
  bytes before the read) it was reset;
- a counter we created ourselves starts at zero (:meth:`started`), so all of
  it is added even if it has already passed the old value;
- a counter missing from a read is kept, with its last value and epoch, for
  ``retention`` seconds: a dump that missed it, or a rule deleted and put
  back as it was, continues where it was when it comes back with the same
  epoch (or none); with another epoch it is a new incarnation, counted whole.

Totals never decrease.  An address that moves to another container keeps its
kernel counter; its growth from then on goes to the new owner's series, and
the old owner's series keeps its total.  A series is kept while it is seen,
and for ``retention`` seconds after (:meth:`expire`).
"""

from __future__ import annotations

import time
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple, Optional

from ..model import CounterKey, Epoch, SeriesKey, SeriesRow
from .growth import (
    NO_SERIES,
    SATURATED,
    Bits,
    Counters,
    changed_slots,
    epoch_slot,
    epochs_of,
    growth,
    in_turns,
)
from .persist import STATE_VERSION, from_state, to_state
from .series import SeriesTable

__all__ = ["SATURATED", "STATE_VERSION", "Accumulator", "Observation"]


class Observation(NamedTuple):
    counter: CounterKey
    series: Optional[SeriesKey]  # None: an address nobody owns now; tracked, not totalled
    packets: int
    bytes: int
    packet_bits: Optional[int] = None  # the packet counter wraps at 2**packet_bits
    epoch: Epoch = None  # the counter's incarnation, when the source can tell


class Accumulator:
    """Raw counters per source, as of their last read, and the series table they add to.

    Every read goes through one core (:meth:`_apply`): the counters of the
    last read, lined up with the new one (:meth:`_line_up`, when the counters
    are not the same in the same order), then one step per counter that
    changed.
    """

    def __init__(self, boot_id: Optional[str] = None) -> None:
        self.series = SeriesTable()
        self.counters: dict[str, Counters] = {}  # per source, its counters as of its last read
        self.read_at: dict[str, int] = {}  # per source, the time of its last read
        # Per source, its counters missing from reads: counter -> (packets, bytes, epoch, missing since)
        self.missing: dict[str, dict[CounterKey, tuple[int, int, int, int]]] = {}
        # Per (veid, class, direction, family): the Virtuozzo 9 counts made exclusive never go below these.
        self.floors: dict[tuple[str, ...], tuple[int, int]] = {}
        self.resets: Counter[str] = Counter()
        self.boot_id = boot_id
        self._changes = 0

    @property
    def changes(self) -> int:
        """Bumped by every change that growth alone does not repeat: a counter seen, forgotten or reset, a
        series made or dropped.  A read that leaves it alone needs no save: the kernel still holds that
        growth."""
        return self._changes + self.series.made

    # -- reads -----------------------------------------------------------------

    def update(self, source: str, observations: Iterable[Observation], now: Optional[float] = None) -> None:
        """Add one complete read of a source."""
        obs = list(observations)
        counters, series, packets, nbytes, bits, epochs = (list(c) for c in zip(*obs)) if obs else ([],) * 6
        one = bits[0] if bits else None  # one width for the read, else one per counter
        width = one if bits.count(one) == len(bits) else bits
        self.update_columns(source, counters, series, packets, nbytes, epochs, width, now)

    def update_columns(
        self,
        source: str,
        counters: Sequence[CounterKey],
        series: Sequence[Optional[SeriesKey]],
        packets: Sequence[int],
        nbytes: Sequence[int],
        epochs: Optional[Sequence[Optional[int]]] = None,
        packet_bits: Bits = None,
        now: Optional[float] = None,
    ) -> None:
        """Add one complete read of a source, column by column: counter i is (counters[i], series[i], ...).

        epochs: None where the source cannot tell (an epoch not given keeps the one it had); packet_bits:
        the width of the read's packet counters, when narrow.  A read whose counters come in the order of
        the last one costs a comparison of arrays, plus one step per counter that changed.
        """
        stamp = int(time.time() if now is None else now)
        old = self.counters.get(source)
        if old is None or len(counters) != len(old) or counters != old.keys:
            place: dict[CounterKey, int] = {}
            for counter in counters:
                place.setdefault(counter, len(place))
            if len(place) < len(counters):  # a counter twice in one read: each time after the one before
                for turn in in_turns(counters, series, packets, nbytes, epochs, packet_bits):
                    self.update_columns(source, *turn, now=stamp)
                return
            old = self._line_up(source, list(counters), place, stamp)
        elif not isinstance(counters, list):
            counters = list(counters)
        p, b = array("Q", packets), array("Q", nbytes)
        self._apply(source, old, series, p, b, epochs_of(old.epochs, epochs), packet_bits, stamp)

    def _line_up(
        self, source: str, counters: list[CounterKey], place: dict[CounterKey, int], stamp: int
    ) -> Counters:
        """The last read's counters in this one's order (see Counters.lined_up); those not in it are kept as
        missing, and their series were last seen by the read before."""
        old = self.counters.get(source) or Counters()
        missing = self.missing.setdefault(source, {})
        lined, came = old.lined_up(counters, missing)
        gone = [i for i, counter in enumerate(old.keys) if counter not in place]
        before = self.read_at.get(source)
        for i in gone:
            missing[old.keys[i]] = (old.packets[i], old.bytes[i], old.epochs[i], stamp)
            if old.slots[i] != NO_SERIES and before is not None:
                self.series.saw(old.slots[i], before)
        self._changes += came + len(gone)
        self.counters[source] = lined
        return lined

    def _apply(
        self,
        source: str,
        old: Counters,
        series: Sequence[Optional[SeriesKey]],
        p: array[int],
        b: array[int],
        e: array[int],
        bits: Bits,
        stamp: int,
    ) -> None:
        """The update core: counter i of the last read (lined up) now shows (series[i], p[i], b[i], e[i])."""
        op, ob, oe, slots, keys = old.packets, old.bytes, old.epochs, old.slots, old.series
        same_series, same_epochs = series == keys, e is oe or e == oe
        if same_series and same_epochs and p == op and b == ob:
            self.read_at[source] = stamp  # nothing grew, nothing moved
            return
        changed = changed_slots(old, series, p, b, e, same_series and same_epochs)
        table = self.series
        before = self.read_at.get(source)
        totals_p, totals_b, seen = table.packets, table.bytes, table.seen
        width, widths = (bits, None) if bits is None or isinstance(bits, int) else (None, bits)
        grown: list[int] = []
        resets = 0
        for i in changed:
            if not same_series:
                key = series[i]
                if key != keys[i]:  # its growth from now on goes to another series
                    if slots[i] != NO_SERIES and before is not None:
                        table.saw(slots[i], before)  # its old series was last seen by the read before
                    keys[i] = key
                    slots[i] = NO_SERIES if key is None else table.slot(key, stamp)
                    totals_p, totals_b, seen = table.packets, table.bytes, table.seen
            p0, b0, p1, b1 = op[i], ob[i], p[i], b[i]
            if same_epochs and p1 >= p0 and b1 >= b0:  # the common case of the rule: the difference
                dp, db = p1 - p0, b1 - b0
            else:
                (dp, db), reset = growth(p0, b0, oe[i], p1, b1, e[i], width if widths is None else widths[i])
                resets += reset
                oe[i] = e[i]
            op[i], ob[i] = p1, b1
            slot = slots[i]
            if slot != NO_SERIES:
                seen[slot] = stamp
                if dp or db:
                    totals_p[slot] += dp
                    totals_b[slot] += db
                    grown.append(slot)
        table.grew(grown)
        self.read_at[source] = stamp
        self.resets[source] += resets
        self._changes += resets

    # -- what we did to the kernel's counters ------------------------------------

    def started(self, source: str, counter: CounterKey, epoch: Epoch = None) -> None:
        """A counter we have just created: it starts from zero."""
        counters = self.counters.setdefault(source, Counters())
        self.missing.get(source, {}).pop(counter, None)  # one gone before: its end was accounted then
        if counter in counters.index():
            self.resets[source] += 1  # it replaces one we were reading
        counters.set(counter, 0, 0, epoch_slot(epoch))
        self._changes += 1

    def restamped(self, source: str, counter: CounterKey, epoch: Epoch) -> None:
        """We gave a counter a new epoch without resetting it: not a reset."""
        counters = self.counters.get(source)
        i = None if counters is None else counters.index().get(counter)
        if counters is not None and i is not None:
            counters.epochs[i] = epoch_slot(epoch)
            self._changes += 1

    def boot(self, boot_id: Optional[str]) -> int:
        """Declare the kernel's boot id; a new boot resets every counter.  Returns resets absorbed."""
        if boot_id is None or boot_id == self.boot_id:
            return 0
        absorbed = 0
        if self.boot_id is not None:
            self.touch()
            for source, counters in self.counters.items():
                self.resets[source] += len(counters)
                absorbed += len(counters)
            self.counters.clear()
        self.missing.clear()
        self.boot_id = boot_id
        self._changes += 1
        return absorbed

    # -- retention ---------------------------------------------------------------

    def touch(self) -> None:
        """Bring every series' last-seen time up to the last read of the counters that feed it.

        Reads set it only for counters that changed; this does it for the rest, where it is needed.
        """
        seen = self.series.seen
        for source, counters in self.counters.items():
            stamp = self.read_at.get(source)
            if stamp is None:
                continue
            for slot in set(counters.slots):
                if slot != NO_SERIES and seen[slot] < stamp:
                    seen[slot] = stamp

    def expire(self, retention: float, now: Optional[float] = None) -> int:
        """Drop the series not seen for longer than retention, and counters missing as long; returns how many
        series."""
        now = time.time() if now is None else now
        stale = self.series.stale(retention, now)
        gone = []
        if stale:
            self.touch()  # a series fed by a counter was seen at its source's last read
            gone = [slot for slot in stale if now - self.series.seen[slot] > retention]
        if gone:
            renumber = self.series.drop(set(gone))
            for counters in self.counters.values():
                counters.renumber(renumber)
            left = self.series.veids()
            self.floors = {key: floor for key, floor in self.floors.items() if key[0] in left}
        for missing in self.missing.values():
            old = [counter for counter, kept in missing.items() if now - kept[3] > retention]
            for counter in old:
                del missing[counter]
            self._changes += len(old)
        return len(gone)

    # -- the totals ----------------------------------------------------------------

    def total(self, series: SeriesKey) -> tuple[int, int]:
        """(packets, bytes) accumulated for a series."""
        return self.series.total(series)

    def rows(self, kind: str) -> list[SeriesRow]:
        """(series, packets, bytes) of every retained series of a kind, sorted (see SeriesTable.rows)."""
        return self.series.rows(kind)

    def floor(self, key: tuple[str, ...], packets: int, nbytes: int) -> tuple[int, int]:
        """A total that must never decrease, made from counts that may (the Virtuozzo 9 classes made
        exclusive): at least what it was last."""
        last = self.floors.get(key, (0, 0))
        value = (max(packets, last[0]), max(nbytes, last[1]))
        if value != last:
            self.floors[key] = value
        return value

    # -- persistence -----------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """A JSON-ready, versioned copy of everything the accumulator knows."""
        return to_state(self)

    @classmethod
    def from_state(cls, state: dict[str, Any], dropped: Optional[list[str]] = None) -> Accumulator:
        """The accumulator saved by :meth:`to_state` (ValueError if it is not one; see persist.from_state)."""
        acc = cls()
        from_state(acc, state, dropped)
        return acc
