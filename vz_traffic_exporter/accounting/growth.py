"""The growth rule: what a raw counter added between two reads, and the slots that hold raw counters."""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Optional, Union

from ..model import CounterKey, SeriesKey

# A 32-bit packet count read with json-c's json_object_get_int (Virtuozzo 9's vznetstat) stops
# here instead of wrapping: down from this value it was reset.
SATURATED = 2**31 - 1
RAW_LIMIT = 1 << 64  # a kernel counter's values
MIN_PACKET = 20  # bytes of the smallest IP packet (an IPv4 header): 2**32 packets carry 80 GiB or more
NO_SERIES = -1
NO_EPOCH = RAW_LIMIT - 1  # an epoch is below it: the slot of a counter whose epoch is not known
Bits = Union[
    Optional[int], Sequence[Optional[int]]
]  # one packet counter width for a read, or one per counter


def growth(
    p0: int, b0: int, e0: int, p1: int, b1: int, e1: int, bits: Optional[int]
) -> tuple[tuple[int, int], int]:
    """((packets, bytes) added, resets) of a counter read at (p1, b1, epoch e1) after (p0, b0, e0).

    The whole rule (``accounting`` says why); its common case, the same epoch
    and both values up, is the difference.
    """
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


def epoch_slot(epoch: Optional[int]) -> int:
    """An epoch in the range an array slot holds: only equality matters, and values we make are in it."""
    if epoch is None:
        return NO_EPOCH
    return epoch if 0 <= epoch < NO_EPOCH else epoch % NO_EPOCH


def epoch_array(epochs: Iterable[int]) -> array[int]:
    values = list(epochs)
    try:
        return array("Q", values)
    except OverflowError:
        return array("Q", map(epoch_slot, values))


def epochs_of(last: array[int], epochs: Optional[Sequence[Optional[int]]]) -> array[int]:
    """A read's epochs in slots (lined up with the last read's): an epoch not given keeps the one it had."""
    unknown = len(last) if epochs is None else epochs.count(None)
    if unknown == len(last):
        return last
    if unknown == 0:
        return epoch_array(epochs)  # type: ignore[arg-type]
    return epoch_array(e0 if e is None else e for e0, e in zip(last, epochs))  # type: ignore[arg-type]


class Counters:
    """One source's counters as of its last read, slot by slot in that read's order.

    Integer arrays hold the raw values; the only objects per slot are the
    counter's identity and a reference to its series' key (shared with the
    series table).
    """

    __slots__ = ("_index", "bytes", "epochs", "keys", "packets", "series", "slots")

    def __init__(self) -> None:
        self.keys: list[CounterKey] = []
        self.series: list[Optional[SeriesKey]] = []
        self.slots = array("q")  # the series' slot in the series table (NO_SERIES: none)
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

    def set(self, key: CounterKey, p: int, b: int, e: int) -> None:
        """A counter's raw values (appended, with no series yet, if it is new)."""
        i = self.index().get(key)
        if i is None:
            self.append(key, None, NO_SERIES, p, b, e)
        else:
            self.packets[i], self.bytes[i], self.epochs[i] = p, b, e

    def lined_up(
        self, counters: list[CounterKey], missing: dict[CounterKey, tuple[int, int, int, int]]
    ) -> tuple[Counters, int]:
        """These counters in the order of a new read, and how many are new to it: a new one holds nothing
        before it, or what it held when it went missing (taken out of missing)."""
        index = self.index()
        lined = Counters()
        came = 0
        for counter in counters:
            was = index.get(counter)
            if was is not None:
                s, p, b, e = self.series[was], self.packets[was], self.bytes[was], self.epochs[was]
                lined.append(counter, s, self.slots[was], p, b, e)
                continue
            kept = missing.pop(counter, None) if missing else None
            p, b, e = (0, 0, NO_EPOCH) if kept is None else kept[:3]
            lined.append(counter, None, NO_SERIES, p, b, e)
            came += 1
        lined._index = None
        return lined, came

    def renumber(self, slots: dict[int, int]) -> None:
        """Series slots renumbered after a drop (a slot not in it: its series is gone)."""
        for i, slot in enumerate(self.slots):
            if slot != NO_SERIES:
                new = slots.get(slot, NO_SERIES)
                self.slots[i] = new
                if new == NO_SERIES:
                    self.series[i] = None


def in_turns(
    counters: Sequence[CounterKey],
    series: Sequence[Optional[SeriesKey]],
    packets: Sequence[int],
    nbytes: Sequence[int],
    epochs: Optional[Sequence[Optional[int]]],
    bits: Bits,
) -> Iterator[tuple[Any, Any, Any, Any, Any, Any]]:
    """A read that has some counters more than once, as reads in turn (each a read's columns): the n-th has
    each counter's n-th value, or its last; what the kernel showed twice in one read grew in between."""
    turns: list[dict[CounterKey, int]] = []
    for i, counter in enumerate(counters):
        for turn in turns:
            if counter not in turn:
                turn[counter] = i
                break
        else:
            turns.append({counter: i})
    order = list(turns[0])
    last: dict[CounterKey, int] = {}
    for turn in turns:
        last.update(turn)
        at = [last[counter] for counter in order]
        yield (
            order,
            [series[i] for i in at],
            [packets[i] for i in at],
            [nbytes[i] for i in at],
            None if epochs is None else [epochs[i] for i in at],
            bits if bits is None or isinstance(bits, int) else [bits[i] for i in at],
        )


def changed_slots(
    old: Counters,
    series: Sequence[Optional[SeriesKey]],
    p: array[int],
    b: array[int],
    e: array[int],
    same: bool,
) -> list[int]:
    """The slots of a read (lined up with the last) whose values, epoch or series changed; same: no series
    moved and no epoch changed."""
    if same:
        return [
            i for i, (p1, p0, b1, b0) in enumerate(zip(p, old.packets, b, old.bytes)) if p1 != p0 or b1 != b0
        ]
    return [
        i
        for i, (p1, p0, b1, b0, e1, e0, s1, s0) in enumerate(
            zip(p, old.packets, b, old.bytes, e, old.epochs, series, old.series)
        )
        if p1 != p0 or b1 != b0 or e1 != e0 or s1 != s0
    ]
