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
from itertools import repeat
from typing import Any, NamedTuple, Optional, Union, cast

STATE_VERSION = 2
# A 32-bit packet count read with json-c's json_object_get_int (Virtuozzo 9's vznetstat) stops
# here instead of wrapping: down from this value it was reset.
SATURATED = 2**31 - 1
RAW_LIMIT = 1 << 64  # a kernel counter's values
MIN_PACKET = 20  # bytes of the smallest IP packet (an IPv4 header): 2**32 packets carry 80 GiB or more
TOTAL_LIMIT = 1 << 64  # 18 EB: no total gets near this; a value beyond it in a state file is not one of ours
# The kinds of series the exporter keeps, with the number of parts of their keys.
SERIES_PARTS = {"ip": 5, "container": 6, "interface": 4}
VEID_PART = {"ip": 1, "container": 2, "interface": 1}  # where a kind's key has its container


def veid_of(series: tuple[str, ...]) -> str:
    return series[VEID_PART.get(series[0], 1)]


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


NO_SERIES = -1
NO_EPOCH = RAW_LIMIT - 1  # an epoch is below it: the slot of a counter whose epoch is not known


class _Counters:
    """One source's counters as of its last read, slot by slot in that read's order.

    Integer arrays hold the raw values; the only objects per slot are the
    counter's identity and a reference to its series' key (shared with the
    series table).
    """

    __slots__ = ("_index", "bytes", "epochs", "keys", "packets", "series", "slots")

    def __init__(self) -> None:
        self.keys: list[CounterKey] = []
        self.series: list[Optional[SeriesKey]] = []
        self.slots = array("q")  # the series' slot in the accumulator (NO_SERIES: none)
        self.packets = array("Q")
        self.bytes = array("Q")
        self.epochs = array("Q")  # NO_EPOCH: not known
        self._index: Optional[dict[CounterKey, int]] = None

    def __len__(self) -> int:
        return len(self.keys)

    def index(self) -> dict[CounterKey, int]:
        if self._index is None:
            self._index = {key: i for i, key in enumerate(self.keys)}
        return self._index

    def append(self, key: CounterKey, series: Optional[SeriesKey], slot: int, p: int, b: int, e: int) -> None:
        if self._index is not None:
            self._index[key] = len(self.keys)
        self.keys.append(key)
        self.series.append(series)
        self.slots.append(slot)
        self.packets.append(p)
        self.bytes.append(b)
        self.epochs.append(e)


class Accumulator:
    def __init__(self, boot_id: Optional[str] = None) -> None:
        self._counters: dict[str, _Counters] = {}  # per source, its counters as of its last read
        self._read_at: dict[str, int] = {}  # per source, the time of its last read
        # Per source, its counters missing from reads: counter -> (packets, bytes, epoch, missing since)
        self._missing: dict[str, dict[CounterKey, tuple[int, int, int, int]]] = {}
        # The series: a slot each, its key, and its totals and last-seen time in integer arrays.
        self._slot: dict[SeriesKey, int] = {}
        self._keys: list[SeriesKey] = []
        self._packets = array("Q")
        self._bytes = array("Q")
        self._seen = array("q")  # wall-clock time (s) of the last read that showed the series
        self.resets: Counter[str] = Counter()
        # Per container, when its first series was made (from zero): everything it counted came after.
        # 0: not known (kept by a state file from before these were kept).
        self.created: dict[str, int] = {}
        self._created_rows: tuple[int, tuple[tuple[str, int], ...]] = (-1, ())
        self.boot_id = boot_id
        # Bumped by every change that growth alone does not repeat: a counter
        # seen, forgotten or reset, a series made or dropped.  A read that
        # leaves it alone needs no save: the kernel still holds that growth.
        self.changes = 0
        self.series_made = 0  # bumped when a series is made or dropped
        # kind -> (series_made, sorted rows, series slot -> its row), and the slots that grew since
        self._rows: dict[str, tuple[int, list[SeriesRow], array[int]]] = {}
        self._dirty: dict[str, set[int]] = {}

    # -- reads -----------------------------------------------------------------

    def update(self, source: str, observations: Iterable[Observation], now: Optional[float] = None) -> None:
        """Add one complete read of a source."""
        observations = list(observations)
        bits = {obs.packet_bits for obs in observations}
        if len(bits) > 1:  # counters of several widths: one read each way is not one read; do it slot by slot
            self._read(
                source,
                [(o.counter, o.series, o.packets, o.bytes, o.epoch, o.packet_bits) for o in observations],
                now,
            )
            return
        self.update_columns(
            source,
            [obs.counter for obs in observations],
            [obs.series for obs in observations],
            [obs.packets for obs in observations],
            [obs.bytes for obs in observations],
            [obs.epoch for obs in observations],
            bits.pop() if bits else None,
            now,
        )

    def update_columns(
        self,
        source: str,
        counters: Sequence[CounterKey],
        series: Sequence[Optional[SeriesKey]],
        packets: Sequence[int],
        nbytes: Sequence[int],
        epochs: Optional[Sequence[Optional[int]]] = None,
        packet_bits: Optional[int] = None,
        now: Optional[float] = None,
    ) -> None:
        """Add one complete read of a source, column by column: counter i is (counters[i], series[i], ...).

        epochs: None where the source cannot tell; packet_bits: the width of every packet counter of the
        read, when narrow.  The same arithmetic as :meth:`update`; a read whose counters come in the order
        of the last one costs a comparison of arrays, plus one step per counter that changed.
        """
        old = self._counters.get(source)
        if old is None or not isinstance(counters, list) or len(counters) != len(old) or counters != old.keys:
            rows = zip(
                counters, series, packets, nbytes, epochs or [None] * len(counters), repeat(packet_bits)
            )
            self._read(source, list(rows), now)
            return
        stamp = int(time.time() if now is None else now)
        p, b = array("Q", packets), array("Q", nbytes)
        e = old.epochs
        if epochs is not None:  # an epoch not given keeps the one it had
            given = cast("Sequence[int]", epochs) if None not in epochs else None
            e = _epochs(
                given if given is not None else (o if x is None else x for o, x in zip(old.epochs, epochs))
            )
        same_series = series == old.series
        if p == old.packets and b == old.bytes and e == old.epochs and same_series:
            self._read_at[source] = stamp  # nothing grew, nothing moved
            return
        if same_series and e == old.epochs:
            self._grown(source, old, p, b, packet_bits, stamp)
            return
        changed = [
            i
            for i, (p1, p0, b1, b0, e1, e0) in enumerate(zip(p, old.packets, b, old.bytes, e, old.epochs))
            if p1 != p0 or b1 != b0 or e1 != e0
        ]
        moved: list[int] = []
        if not same_series:
            moved = [i for i, (s1, s0) in enumerate(zip(series, old.series)) if s1 != s0]
            changed = sorted(set(changed).union(moved))
        resets = 0
        before = self._read_at.get(source)
        for i in changed:
            key = series[i]
            if key != old.series[i]:
                if old.slots[i] != NO_SERIES and before is not None:
                    self._saw(old.slots[i], before)  # its old series was last seen by the read before
                old.series[i] = key
                old.slots[i] = NO_SERIES if key is None else self._series(key, stamp)
            grew, reset = _growth(old.packets[i], old.bytes[i], old.epochs[i], p[i], b[i], e[i], packet_bits)
            resets += reset
            old.packets[i], old.bytes[i], old.epochs[i] = p[i], b[i], e[i]
            self._add(old.slots[i], grew, stamp)
        self._read_at[source] = stamp
        self.resets[source] += resets
        self.changes += resets

    def _grown(
        self, source: str, old: _Counters, p: array[int], b: array[int], bits: Optional[int], stamp: int
    ) -> None:
        """:meth:`update_columns` where every counter kept its series and epoch: one step per counter that
        changed, the common case (it grew) without a call."""
        op, ob, slots = old.packets, old.bytes, old.slots
        totals_p, totals_b, seen = self._packets, self._bytes, self._seen
        grown: list[int] = []
        resets = 0
        for i in [i for i, (p1, p0, b1, b0) in enumerate(zip(p, op, b, ob)) if p1 != p0 or b1 != b0]:
            p0, b0, p1, b1 = op[i], ob[i], p[i], b[i]
            if p1 >= p0 and b1 >= b0:
                dp, db = p1 - p0, b1 - b0
            else:
                (dp, db), reset = _growth(p0, b0, NO_EPOCH, p1, b1, NO_EPOCH, bits)
                resets += reset
            op[i], ob[i] = p1, b1
            slot = slots[i]
            if slot != NO_SERIES:
                seen[slot] = stamp
                if dp or db:
                    totals_p[slot] += dp
                    totals_b[slot] += db
                    grown.append(slot)
        keys = self._keys
        for slot in grown:
            kind = keys[slot][0]
            dirty = self._dirty.get(kind)
            if dirty is None:
                dirty = self._dirty[kind] = set()
            dirty.add(slot)
        self._read_at[source] = stamp
        self.resets[source] += resets
        self.changes += resets

    def _read(
        self,
        source: str,
        rows: list[tuple[CounterKey, Optional[SeriesKey], int, int, Optional[int], Optional[int]]],
        now: Optional[float],
    ) -> None:
        """A read slot by slot: counters that came, went or came twice."""
        stamp = int(time.time() if now is None else now)
        old = self._counters.get(source) or _Counters()
        index = old.index()
        missing = self._missing.get(source, {})
        new = _Counters()
        place = new.index()
        resets = 0
        moved: list[int] = []  # series slots last fed by the read before
        for counter, key, packets, nbytes, epoch, bits in rows:
            at = place.get(counter)
            # The same counter twice in one read: the second follows the first.
            last, was = (new, at) if at is not None else (old, index.get(counter))
            slot = NO_SERIES if key is None else self._series(key, stamp)
            e = NO_EPOCH if epoch is None else _epoch(epoch)
            if was is None:
                kept = missing.pop(counter, None) if missing else None
                if kept is None:
                    grew = (packets, nbytes)
                else:  # back after a read that missed it
                    if e == NO_EPOCH:
                        e = kept[2]
                    grew, reset = _growth(kept[0], kept[1], kept[2], packets, nbytes, e, bits)
                    resets += reset
                self.changes += 1
            else:
                if last.slots[was] != NO_SERIES and last.series[was] != key:
                    moved.append(last.slots[was])
                if e == NO_EPOCH:
                    e = last.epochs[was]  # keeps the epoch it was given
                grew, reset = _growth(
                    last.packets[was], last.bytes[was], last.epochs[was], packets, nbytes, e, bits
                )
                resets += reset
            if at is not None:
                new.series[at], new.slots[at] = key, slot
                new.packets[at], new.bytes[at], new.epochs[at] = packets, nbytes, e
            else:
                new.append(counter, key, slot, packets, nbytes, e)
            self._add(slot, grew, stamp)
        before = self._read_at.get(source)
        gone = [i for i, counter in enumerate(old.keys) if counter not in place]
        if gone:
            missing = self._missing.setdefault(source, missing)
            for i in gone:
                missing[old.keys[i]] = (old.packets[i], old.bytes[i], old.epochs[i], stamp)
        if before is not None:  # counters gone or moved to another series: theirs was last seen then
            for slot in [*(old.slots[i] for i in gone), *moved]:
                if slot != NO_SERIES:
                    self._saw(slot, before)
        new._index = None
        self._counters[source] = new
        self._read_at[source] = stamp
        self.resets[source] += resets
        self.changes += len(gone) + resets

    def _series(self, key: SeriesKey, stamp: int) -> int:
        """The slot of a series, made (from zero) if it is new."""
        slot = self._slot.get(key)
        if slot is None:
            slot = self._slot[key] = len(self._keys)
            self._keys.append(key)
            self._packets.append(0)
            self._bytes.append(0)
            self._seen.append(stamp)
            self.changes += 1
            self.series_made += 1
            self.created.setdefault(veid_of(key), stamp)
        return slot

    def _add(self, slot: int, grew: tuple[int, int], stamp: int) -> None:
        if slot == NO_SERIES:
            return
        self._seen[slot] = stamp
        if grew[0] or grew[1]:
            self._packets[slot] += grew[0]
            self._bytes[slot] += grew[1]
            kind = self._keys[slot][0]
            dirty = self._dirty.get(kind)
            if dirty is None:
                dirty = self._dirty[kind] = set()
            dirty.add(slot)

    def _saw(self, slot: int, stamp: int) -> None:
        if self._seen[slot] < stamp:
            self._seen[slot] = stamp

    def _touch(self) -> None:
        """Bring every series' last-seen time up to the last read of the counters that feed it.

        Reads set it only for counters that changed; this does it for the rest, where it is needed.
        """
        seen = self._seen
        for source, counters in self._counters.items():
            stamp = self._read_at.get(source)
            if stamp is None:
                continue
            for slot in set(counters.slots):
                if slot != NO_SERIES and seen[slot] < stamp:
                    seen[slot] = stamp

    def _set(self, source: str, counter: CounterKey, packets: int, nbytes: int, epoch: Epoch) -> None:
        counters = self._counters.setdefault(source, _Counters())
        i = counters.index().get(counter)
        e = NO_EPOCH if epoch is None else _epoch(epoch)
        if i is None:
            counters.append(counter, None, NO_SERIES, packets, nbytes, e)
        else:
            counters.packets[i], counters.bytes[i], counters.epochs[i] = packets, nbytes, e

    def started(self, source: str, counter: CounterKey, epoch: Epoch = None) -> None:
        """A counter we have just created: it starts from zero."""
        counters = self._counters.get(source)
        self._missing.get(source, {}).pop(counter, None)  # one gone before: its end was accounted then
        if counters is not None and counter in counters.index():
            self.resets[source] += 1  # it replaces one we were reading
        self._set(source, counter, 0, 0, epoch)
        self.changes += 1

    def restamped(self, source: str, counter: CounterKey, epoch: Epoch) -> None:
        """We gave a counter a new epoch without resetting it: not a reset."""
        counters = self._counters.get(source)
        i = None if counters is None else counters.index().get(counter)
        if counters is not None and i is not None:
            self._set(source, counter, counters.packets[i], counters.bytes[i], epoch)
            self.changes += 1

    def boot(self, boot_id: Optional[str]) -> int:
        """Declare the kernel's boot id; a new boot resets every counter.  Returns resets absorbed."""
        if boot_id is None or boot_id == self.boot_id:
            return 0
        absorbed = 0
        if self.boot_id is not None:
            self._touch()
            for source, counters in self._counters.items():
                self.resets[source] += len(counters)
                absorbed += len(counters)
            self._counters.clear()
        self._missing.clear()
        self.boot_id = boot_id
        self.changes += 1
        return absorbed

    def expire(self, retention: float, now: Optional[float] = None) -> int:
        """Drop the series not seen for longer than retention; returns how many."""
        now = time.time() if now is None else now
        stale = [slot for slot, seen in enumerate(self._seen) if now - seen > retention]
        gone = []
        if stale:
            self._touch()  # a series fed by a counter was seen at its source's last read
            gone = [slot for slot in stale if now - self._seen[slot] > retention]
        if gone:
            self._drop(set(gone))
        self.changes += len(gone)
        self.series_made += len(gone)
        for missing in self._missing.values():
            old = [counter for counter, kept in missing.items() if now - kept[3] > retention]
            for counter in old:
                del missing[counter]
            self.changes += len(old)
        return len(gone)

    def _drop(self, gone: set[int]) -> None:
        """Remove series and renumber the slots of the rest, in every source's counters."""
        keep = [slot for slot in range(len(self._keys)) if slot not in gone]
        renumber = {old: new for new, old in enumerate(keep)}
        self._keys = [self._keys[slot] for slot in keep]
        self._packets = array("Q", (self._packets[slot] for slot in keep))
        self._bytes = array("Q", (self._bytes[slot] for slot in keep))
        self._seen = array("q", (self._seen[slot] for slot in keep))
        self._slot = {key: slot for slot, key in enumerate(self._keys)}
        left = {veid_of(key) for key in self._keys}
        self.created = {veid: at for veid, at in self.created.items() if veid in left}
        for counters in self._counters.values():
            for i, slot in enumerate(counters.slots):
                if slot != NO_SERIES:
                    new = renumber.get(slot, NO_SERIES)
                    counters.slots[i] = new
                    if new == NO_SERIES:
                        counters.series[i] = None
        self._rows.clear()
        self._dirty.clear()

    def last_owners(self, kind: str) -> dict[tuple[str, ...], SeriesKey]:
        """Per series key less its kind and owner (an ip series: ip, class, direction), the one last seen."""
        found: dict[tuple[str, ...], tuple[int, SeriesKey]] = {}
        for slot, key in enumerate(self._keys):
            if key[0] == kind:
                rest = key[2:]
                seen = self._seen[slot]
                if rest not in found or found[rest][0] < seen:
                    found[rest] = (seen, key)
        return {rest: key for rest, (_, key) in found.items()}

    def first_seen(self) -> tuple[tuple[str, int], ...]:
        """(veid, when its first series was made) where known, sorted: the same object while no series came
        or went."""
        made, rows = self._created_rows
        if made != self.series_made:
            rows = tuple(sorted((veid, at) for veid, at in self.created.items() if at))
            self._created_rows = (self.series_made, rows)
        return rows

    def total(self, series: SeriesKey) -> tuple[int, int]:
        """(packets, bytes) accumulated for a series."""
        slot = self._slot.get(series)
        return (0, 0) if slot is None else (self._packets[slot], self._bytes[slot])

    def rows(self, kind: str) -> list[SeriesRow]:
        """(series, packets, bytes) of every retained series whose key starts with kind, sorted.

        Kept between calls: made again only when series came or went, else
        only the rows of the series that grew are.  The caller must not change the list.
        """
        cached = self._rows.get(kind)
        dirty = self._dirty.pop(kind, set())
        packets, nbytes = self._packets, self._bytes
        if cached is None or cached[0] != self.series_made:
            slots = sorted(
                (slot for slot, key in enumerate(self._keys) if key[0] == kind), key=self._keys.__getitem__
            )
            rows = [(self._keys[slot], packets[slot], nbytes[slot]) for slot in slots]
            index = array("q", bytes(8 * len(self._keys)))  # series slot -> its row (an array: no dict)
            for i, slot in enumerate(slots):
                index[slot] = i
            self._rows[kind] = (self.series_made, rows, index)
            return rows
        _, rows, index = cached
        for slot in dirty:
            rows[index[slot]] = (self._keys[slot], packets[slot], nbytes[slot])
        return rows

    # -- persistence ---------------------------------------------------------
    #
    # Flat rows keep the file small and quick to write at 10,000 containers:
    #   counters: [source, packets, bytes, epoch, *counter key]
    #   missing:  [source, packets, bytes, epoch, missing since (s), *counter key]
    #   series:   [packets, bytes, last seen (s), *series key]

    def to_state(self) -> dict[str, Any]:
        """A JSON-ready, versioned copy of everything the accumulator knows."""
        self._touch()
        return {
            "version": STATE_VERSION,
            "boot_id": self.boot_id,
            "counters": [
                [source, c.packets[i], c.bytes[i], None if c.epochs[i] == NO_EPOCH else c.epochs[i], *counter]
                for source, c in self._counters.items()
                for i, counter in enumerate(c.keys)
            ],
            "missing": [
                [source, p, b, None if e == NO_EPOCH else e, since, *counter]
                for source, missing in self._missing.items()
                for counter, (p, b, e, since) in missing.items()
            ],
            "series": [
                [self._packets[slot], self._bytes[slot], self._seen[slot], *series]
                for slot, series in enumerate(self._keys)
            ],
            "resets": dict(self.resets),
            "created": dict(self.created),
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
                stamp = None if epoch is None else _count(epoch, NO_EPOCH)
            except (TypeError, ValueError) as err:
                bad(f"counter row {_shown(row)}: {err}")
                continue
            acc._set(source, counter, *values, stamp)
        missing = state.get("missing", [])
        for row in missing if isinstance(missing, list) else [missing]:
            try:
                source, packets, nbytes, epoch, since = row[:5]
                counter = tuple(row[5:])
                if not isinstance(source, str) or not counter or not all(map(_is_part, counter)):
                    raise ValueError("not a counter")
                kept = (
                    _count(packets, RAW_LIMIT),
                    _count(nbytes, RAW_LIMIT),
                    NO_EPOCH if epoch is None else _count(epoch, NO_EPOCH),
                    _count(since, 1 << 63),
                )
            except (TypeError, ValueError) as err:
                bad(f"missing counter row {_shown(row)}: {err}")
                continue
            acc._missing.setdefault(source, {})[counter] = kept
        for row in series_rows:
            try:
                series = tuple(row[3:])
                if not all(isinstance(part, str) for part in series) or SERIES_PARTS.get(series[0]) != len(
                    series
                ):
                    raise ValueError("not a series")
                packets, nbytes, seen = _count(row[0]), _count(row[1]), _count(row[2], 1 << 63)
            except (TypeError, ValueError, IndexError) as err:
                bad(f"series row {_shown(row)}: {err}")
                continue
            slot = acc._series(series, seen)
            acc._packets[slot], acc._bytes[slot], acc._seen[slot] = packets, nbytes, seen
        for source, count in resets.items():
            try:
                acc.resets[str(source)] = _count(count)
            except ValueError as err:
                bad(f"resets of {_shown(source)}: {err}")
        # Made by series rows above at their last-seen times: the creation times are what the file says, and
        # unknown (0) for a container the file has none for (a state file written before it kept them).
        created = state.get("created", {})
        acc.created = dict.fromkeys(acc.created, 0)
        for veid, at in (created if isinstance(created, dict) else {None: created}).items():
            try:
                if not isinstance(veid, str):
                    raise ValueError("not a container")
                acc.created[veid] = _count(at, 1 << 63)
            except ValueError as err:
                bad(f"created of {_shown(veid)}: {err}")
        return acc


def _epoch(epoch: int) -> int:
    """An epoch in the range an array slot holds: only equality matters, and values we make are in it."""
    return epoch if 0 <= epoch < NO_EPOCH else epoch % NO_EPOCH


def _epochs(epochs: Iterable[int]) -> array[int]:
    values = list(epochs)
    try:
        return array("Q", values)
    except OverflowError:
        return array("Q", map(_epoch, values))


def _growth(
    p0: int, b0: int, e0: int, p1: int, b1: int, e1: int, bits: Optional[int]
) -> tuple[tuple[int, int], int]:
    """((packets, bytes) added, resets) of a counter read at (p1, b1, epoch e1) after (p0, b0, e0)."""
    if e0 != NO_EPOCH and e1 != NO_EPOCH and e0 != e1:
        return (p1, b1), 1  # a new incarnation of the counter
    if p1 < p0 and b1 > b0 and bits and p0 != SATURATED:
        # Bytes grew but a narrow packet counter went down: it wrapped, if the bytes can carry the packets.
        # Down from SATURATED (Virtuozzo 9's vznetstat stops there) it can only have been reset.
        wrapped = p1 + (1 << bits) - p0
        if wrapped > 0 and b1 - b0 >= MIN_PACKET * wrapped:  # (a value past the width cannot have wrapped)
            return (wrapped, b1 - b0), 0
    if p1 < p0 or b1 < b0:
        return (p1, b1), 1
    return (p1 - p0, b1 - b0), 0


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:120] + "..."


def _count(value: Any, limit: int = TOTAL_LIMIT) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < limit:
        raise ValueError(f"{_shown(value)} is not a counter value")
    return value


def _is_part(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
