from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vz_traffic_exporter.accounting import Accumulator, Observation
from vz_traffic_exporter.model import SeriesKey

A = ("ip", "101", "192.0.2.11", "0", "out")
B = ("ip", "102", "192.0.2.11", "0", "out")
R = ("r",)


def feed(acc: Accumulator, reads: list[list[tuple[str, tuple[str, ...], int]]]) -> None:
    for read in reads:
        acc.update("iptables", [Observation((c,), s, v, v * 100) for c, s, v in read])


@pytest.mark.parametrize(
    ("reads", "total_a", "total_b", "resets"),
    [
        ([[("r", A, 5)], [("r", A, 8)]], 8, 0, 0),  # growth
        ([[("r", A, 5)], [("r", A, 2)]], 7, 0, 1),  # zeroed, then 2 more
        ([[("r", A, 5)], [("r", A, 5)], [("r", A, 0)]], 5, 0, 1),  # zeroed, nothing since
        ([[("r", A, 5)], [("r", B, 9)]], 5, 4, 0),  # address moved to 102
        ([[("r", A, 5)], [], [("r", A, 3)]], 8, 0, 1),  # rule gone, back below its last value: a reset
        ([[("r", A, 5)], [], [("r", A, 7)]], 7, 0, 0),  # missing from one read, back: it continues
        ([[("r", A, 5), ("t", A, 2)], [("r", A, 6), ("t", A, 4)]], 10, 0, 0),  # twin rules
        ([[("r", None, 5)], [("r", A, 7)]], 2, 0, 0),  # owned only from read 2
    ],
)
def test_cases(reads: list, total_a: int, total_b: int, resets: int) -> None:  # type: ignore[type-arg]
    acc = Accumulator()
    feed(acc, reads)
    assert acc.total(A) == (total_a, total_a * 100)
    assert acc.total(B) == (total_b, total_b * 100)
    assert acc.resets["iptables"] == resets


def test_a_counter_we_created_counts_from_zero_even_above_the_old_value() -> None:
    acc = Accumulator()
    feed(acc, [[("r", A, 5)]])
    acc.started("iptables", R)  # we deleted and re-created the rule
    feed(acc, [[("r", A, 9)]])
    assert acc.total(A) == (14, 1400)


def test_sources_are_independent() -> None:
    acc = Accumulator()
    acc.update("a", [Observation(R, A, 1, 1)])
    acc.update("b", [Observation(R, A, 1, 1)])
    acc.update("a", [])  # a complete read of a without r does not forget b's r
    acc.update("b", [Observation(R, A, 3, 3)])
    assert acc.total(A) == (4, 4)  # 1 from a, 3 from b


@pytest.mark.parametrize(
    ("reads", "packets", "nbytes", "resets"),
    [
        # (packets, bytes) of a vznetstat counter: 32-bit packets, 64-bit bytes
        ([(2**32 - 10, 5000), (5, 6000)], 2**32 + 5, 6000, 0),  # packets wrapped, bytes grew: a wrap
        ([(2**32 - 10, 5000), (5, 100)], 2**32 - 10 + 5, 5100, 1),  # both went down: a reset
        # a container restart, more bytes since than before: 2**32 - 990 packets cannot fit in 30,000 bytes
        ([(1000, 50000), (10, 80000)], 1010, 130000, 1),
        ([(100, 5000), (100, 5000)], 100, 5000, 0),
    ],
)
def test_narrow_packet_counters_wrap(
    reads: list[tuple[int, int]], packets: int, nbytes: int, resets: int
) -> None:
    acc = Accumulator()
    for p, b in reads:
        acc.update("vznetstat", [Observation(("c",), A, p, b, packet_bits=32)])
    assert acc.total(A) == (packets, nbytes)
    assert acc.resets["vznetstat"] == resets


def test_state_round_trip_continues_exactly() -> None:
    acc = Accumulator()
    acc.update("iptables", [Observation(("managed", "out", 1, "192.0.2.11"), A, 10, 1280)])
    acc.update("iptables", [Observation(("managed", "out", 1, "192.0.2.11"), A, 4, 512)])  # a reset
    restored = Accumulator.from_state(json.loads(json.dumps(acc.to_state())))
    restored.update("iptables", [Observation(("managed", "out", 1, "192.0.2.11"), A, 6, 768)])
    assert restored.total(A) == (16, 2048)
    assert restored.resets["iptables"] == 1


@pytest.mark.parametrize(
    "state",
    [
        {},
        [],
        {"version": 99},
        {"version": 1, "last": [[1]]},  # the first format, never written by a release
        {"version": 2, "boot_id": None, "counters": [[1]], "series": [], "resets": {}},
        {"version": 2, "boot_id": None, "counters": [["iptables", 0, 0, None]], "series": [], "resets": {}},
        {
            "version": 2,
            "boot_id": None,
            "counters": [["iptables", 0, 0, None, {}]],
            "series": [],
            "resets": {},
        },
        {
            "version": 2,
            "boot_id": None,
            "counters": [["iptables", 0, -1, None, "r"]],
            "series": [],
            "resets": {},
        },
        {"version": 2, "boot_id": None, "counters": [], "series": [[0, 0, 0]], "resets": {}},
        {"version": 2, "boot_id": None, "counters": [], "series": [[0, 0, 0.5, "ip"]], "resets": {}},
        {"version": 2, "boot_id": None, "counters": [], "series": [[0, 0, 0, 7]], "resets": {}},
        {"version": 2, "boot_id": None, "counters": [], "series": [], "resets": {"iptables": "x"}},
    ],
)
def test_bad_state_is_refused(state: object) -> None:
    with pytest.raises(ValueError):
        Accumulator.from_state(state)  # type: ignore[arg-type]


def test_a_new_epoch_is_a_reset_even_above_the_old_value() -> None:
    acc = Accumulator()
    acc.update("iptables", [Observation(R, A, 5, 500, epoch=1)])
    acc.update("iptables", [Observation(R, A, 9, 900, epoch=2)])  # chain re-created, then 9 packets
    assert acc.total(A) == (14, 1400)
    assert acc.resets["iptables"] == 1
    acc.update("iptables", [Observation(R, A, 10, 1000, epoch=2)])
    assert acc.total(A) == (15, 1500)


def test_a_restamped_counter_keeps_counting_from_where_it_is() -> None:
    acc = Accumulator()
    acc.update("iptables", [Observation(R, A, 5, 500, epoch=1)])
    acc.update("iptables", [Observation(R, A, 2, 200, epoch=0)])  # iptables -Z zeroed the epoch too
    acc.restamped("iptables", R, 3)  # we stamped the chain again, counters untouched
    acc.update("iptables", [Observation(R, A, 4, 400, epoch=3)])
    assert acc.total(A) == (9, 900)
    assert acc.resets["iptables"] == 1


def test_a_counter_without_a_known_epoch_takes_the_next_one() -> None:
    acc = Accumulator()
    acc.started("iptables", R)  # created; its chain's stamp is read later
    acc.update("iptables", [Observation(R, A, 3, 300, epoch=8)])
    acc.update("iptables", [Observation(R, A, 4, 400, epoch=8)])
    assert acc.total(A) == (4, 400)
    assert acc.resets["iptables"] == 0


def test_a_new_boot_resets_every_counter_and_keeps_every_total() -> None:
    acc = Accumulator("boot-1")
    acc.update("iptables", [Observation(R, A, 5, 500)])
    acc.update("interfaces", [Observation(("i",), B, 7, 700)])
    restored = Accumulator.from_state(json.loads(json.dumps(acc.to_state())))
    assert restored.boot("boot-1") == 0  # same boot: nothing to absorb
    assert restored.boot("boot-2") == 2
    restored.update("iptables", [Observation(R, A, 6, 600)])  # above 5, yet all of it is new
    restored.update("interfaces", [Observation(("i",), B, 1, 100)])
    assert restored.total(A) == (11, 1100)
    assert restored.total(B) == (8, 800)
    assert restored.resets == {"iptables": 1, "interfaces": 1}


def test_series_are_kept_for_the_retention_then_dropped() -> None:
    acc = Accumulator()
    day = 86400.0
    acc.update("iptables", [Observation(R, A, 5, 500)], now=0.0)
    acc.update("iptables", [Observation(R, B, 6, 600)], now=day)  # the address moved to 102
    assert acc.expire(35 * day, now=35 * day) == 0
    assert [row[0] for row in acc.rows("ip")] == [A, B]
    assert acc.total(A) == (5, 500)  # the old owner keeps its total
    assert acc.expire(35 * day, now=35 * day + 1) == 1
    assert [row[0] for row in acc.rows("ip")] == [B]


def test_a_counter_read_unchanged_keeps_its_series_seen_until_it_goes() -> None:
    acc = Accumulator()
    day = 86400.0
    obs = Observation(R, A, 5, 500)
    for when in range(11):  # the same object, read every day: nothing grows
        acc.update("iptables", [obs], now=when * day)
    assert acc.expire(5 * day, now=10.5 * day) == 0  # still read: seen on day 10
    acc.update("iptables", [], now=11 * day)  # gone: last seen on day 10
    assert acc.total(A) == (5, 500)
    assert acc.expire(30 * day, now=40 * day) == 0
    assert acc.expire(30 * day, now=40 * day + 1) == 1


def test_the_same_observation_object_twice_in_a_row_adds_nothing() -> None:
    acc = Accumulator()
    obs = Observation(R, A, 5, 500)
    acc.update("iptables", [obs])
    changes = acc.changes
    acc.update("iptables", [obs])
    assert acc.total(A) == (5, 500)
    assert acc.changes == changes
    acc.started("iptables", R)  # re-created by us: the same values again are new
    acc.update("iptables", [obs])
    assert acc.total(A) == (10, 1000)


def test_rows_are_sorted_and_follow_series_that_come_and_go() -> None:
    acc = Accumulator()
    acc.update("iptables", [Observation(R, B, 1, 10)], now=0.0)
    assert acc.rows("ip") == [(B, 1, 10)]
    acc.update("iptables", [Observation(R, B, 2, 20), Observation(("r2",), A, 3, 30)], now=1.0)
    assert acc.rows("ip") == [(A, 3, 30), (B, 2, 20)]
    acc.update("iptables", [Observation(R, B, 2, 20)], now=2.0)
    assert acc.expire(0.5, now=2.0) == 1
    assert acc.rows("ip") == [(B, 2, 20)]
    acc.update("iptables", [Observation(R, B, 4, 40)], now=3.0)  # growth only: the row is updated
    assert acc.rows("ip") == [(B, 4, 40)]
    assert acc.rows("ip") == [(B, 4, 40)]


def test_state_keeps_every_kind_of_counter_identity() -> None:
    acc = Accumulator("b")
    counters = [("managed", "out", 1, "2001:db8::b"), ("interfaces", "veth101.0", 7, "in"), ("adopted", "")]
    acc.update("x", [Observation(c, A, 1, 1, epoch=5) for c in counters])
    restored = Accumulator.from_state(json.loads(json.dumps(acc.to_state())))
    restored.update("x", [Observation(c, A, 2, 2, epoch=5) for c in counters])
    assert restored.total(A) == (6, 6)
    assert restored.resets["x"] == 0


# --- property: any history of readings --------------------------------------
#
# Two kernel counters of one address each (the second has a 32-bit packet
# counter, as vznetstat's) are read at random moments while the addresses move
# between containers, the kernel zeroes or re-creates counters, the exporter
# restarts from its state file and the node reboots.  Each read is followed by
# a save, as the exporter does.  Every exported series must never decrease;
# its bytes never exceed the true traffic of its owner; and when every reset
# is detectable (a poll came before it, and a zeroing that keeps the epoch
# showed as a decrease), the totals equal the true traffic exactly.

OWNERS = (A, B, None)
WRAP = 1 << 32

event = st.one_of(
    st.tuples(
        st.just("grow"),
        st.integers(0, 1),
        st.sampled_from([1, 7, 10**6, 3 * 10**9]),  # packets; 3e9 makes 32 bits wrap
        st.sampled_from([20, 60, 1500]),  # bytes per packet (no IP packet is shorter than 20)
    ),
    st.tuples(st.just("zero"), st.integers(0, 1), st.just(0), st.just(0)),  # iptables -Z: same epoch
    st.tuples(st.just("recreate"), st.integers(0, 1), st.just(0), st.just(0)),  # a new epoch
    st.tuples(st.just("move"), st.integers(0, 1), st.integers(0, 2), st.just(0)),
    st.tuples(st.just("read"), st.just(0), st.just(0), st.just(0)),
    st.tuples(st.just("restart"), st.just(0), st.just(0), st.just(0)),
    st.tuples(st.just("reboot"), st.just(0), st.just(0), st.just(0)),
)


class History:
    """Two raw counters, what really went through them, and the exporter reading them."""

    def __init__(self, detectable: bool) -> None:
        self.detectable = detectable  # poll where needed so that every reset can be seen
        self.packets = [0, 0]  # true packets since the counter's last reset
        self.bytes = [0, 0]
        self.epoch = [1, 1]
        self.owner: list[SeriesKey | None] = [A, A]
        self.pending = [[0, 0], [0, 0]]  # traffic not read yet
        self.true: dict[SeriesKey, list[int]] = {A: [0, 0], B: [0, 0]}
        self.boots = 0
        self.acc = Accumulator("boot-0")
        self.saved = self.acc.to_state()
        self.exported = {A: (0, 0), B: (0, 0)}
        self.interned: dict[Observation, Observation] = {}

    def read(self) -> None:
        observations = []
        for i in (0, 1):
            owner = self.owner[i]
            if owner is not None:
                self.true[owner][0] += self.pending[i][0]
                self.true[owner][1] += self.pending[i][1]
            self.pending[i] = [0, 0]
            packets = self.packets[i] % WRAP if i == 1 else self.packets[i]
            bits = 32 if i == 1 else None
            obs = Observation(("c", i), owner, packets, self.bytes[i], bits, self.epoch[i])
            # As the exporter does: an unchanged counter comes back as the very same object.
            observations.append(self.interned.setdefault(obs, obs))
        self.acc.update("x", observations)
        self.saved = json.loads(json.dumps(self.acc.to_state()))
        for key in (A, B):
            now = self.acc.total(key)
            assert now[0] >= self.exported[key][0] and now[1] >= self.exported[key][1], key
            self.exported[key] = now

    def start(self) -> None:
        """The exporter starts from the state its last read saved."""
        self.acc = Accumulator.from_state(self.saved)
        self.acc.boot(f"boot-{self.boots}")

    def erase(self, i: int) -> None:
        self.packets[i] = self.bytes[i] = 0
        self.pending[i] = [0, 0]  # lost unless it was read

    def play(self, kind: str, i: int, value: int, size: int) -> None:
        resets = kind in ("zero", "recreate", "reboot")
        if self.detectable and (resets or (kind == "grow" and self.pending[i][0] + value >= WRAP)):
            self.read()
        if kind == "grow":
            self.packets[i] += value
            self.bytes[i] += value * size
            self.pending[i] = [self.pending[i][0] + value, self.pending[i][1] + value * size]
        elif kind == "zero":
            self.erase(i)
            if self.detectable:
                self.read()  # the next poll sees the decrease
        elif kind == "recreate":
            self.erase(i)
            self.epoch[i] += 1
        elif kind == "move":
            self.owner[i] = OWNERS[value]
        elif kind == "read":
            self.read()
        elif kind == "restart":  # SIGKILL right after a read's save, then a start
            self.start()
        else:  # SIGTERM (a final read and save), then a reboot
            self.read()
            self.erase(0)
            self.erase(1)
            self.boots += 1
            self.start()


@settings(max_examples=1500, deadline=None)
@given(st.lists(event, max_size=30))
def test_totals_are_exact_whenever_every_reset_is_detectable(script: list) -> None:  # type: ignore[type-arg]
    history = History(detectable=True)
    for step in [*script, ("read", 0, 0, 0)]:
        history.play(*step)
    for key in (A, B):
        assert history.acc.total(key) == tuple(history.true[key]), key


@settings(max_examples=500, deadline=None)
@given(st.lists(event, max_size=40))
def test_totals_never_decrease_and_never_invent_bytes(script: list) -> None:  # type: ignore[type-arg]
    history = History(detectable=False)
    for step in [*script, ("read", 0, 0, 0)]:
        history.play(*step)  # every read asserts that no series went down
    for key in (A, B):
        assert history.acc.total(key)[1] <= history.true[key][1], key


def test_a_counter_missing_from_reads_keeps_its_value_and_epoch_for_the_retention_time() -> None:
    acc = Accumulator()
    acc.update("nftables", [Observation(R, A, 5, 500, epoch=7)], now=1000)
    acc.update("nftables", [], now=1010)  # a dump that missed it
    # Through a restart from the state file, it continues where it was, with the epoch it had.
    acc = Accumulator.from_state(json.loads(json.dumps(acc.to_state())))
    acc.update("nftables", [Observation(R, A, 9, 900, epoch=7)], now=1020)
    assert acc.total(A) == (9, 900) and acc.resets["nftables"] == 0
    acc.update("nftables", [], now=1030)
    acc.update("nftables", [Observation(R, A, 12, 1200, epoch=8)], now=1040)  # a new incarnation: all of it
    assert acc.total(A) == (21, 2100) and acc.resets["nftables"] == 1

    acc.update("nftables", [], now=1050)
    assert acc.expire(100, now=1139) == 0
    acc.update("nftables", [Observation(R, A, 15, 1500, epoch=8)], now=1139)  # within the retention
    assert acc.total(A) == (24, 2400)
    acc.update("nftables", [], now=1140)
    assert acc.expire(100, now=1241) == 1  # the series, not fed for longer than that
    acc.update("nftables", [Observation(R, A, 16, 1600, epoch=8)], now=1242)  # forgotten: all of it is new
    assert acc.total(A) == (16, 1600)


def test_a_counter_we_created_where_a_missing_one_was_counts_from_zero() -> None:
    acc = Accumulator()
    feed(acc, [[("r", A, 5)], []])
    acc.started("iptables", R)
    feed(acc, [[("r", A, 9)]])
    assert acc.total(A) == (14, 1400) and acc.resets["iptables"] == 0  # ours, not a reset to absorb


def test_rows_and_their_version_follow_a_read_where_most_series_grew_and_one_where_few_did() -> None:
    acc = Accumulator()
    keys = [("ip", str(100 + i), f"192.0.2.{i}", "1", "out") for i in range(10)]

    def read(values: list[int]) -> None:
        acc.update(
            "iptables",
            [Observation(("c", i), key, v, 100 * v) for i, (key, v) in enumerate(zip(keys, values))],
        )

    read([1] * 10)
    assert [row[1] for row in acc.rows("ip")] == [1] * 10
    version = acc.series.version("ip")
    read([2] * 10)  # every series grew
    assert [row[1] for row in acc.rows("ip")] == [2] * 10 and acc.series.version("ip") == version + 1
    read([2] * 9 + [5])  # one did
    assert [row[1] for row in acc.rows("ip")] == [2] * 9 + [5] and acc.series.version("ip") == version + 2
    acc.rows("ip")  # nothing grew since: the same version
    assert acc.series.version("ip") == version + 2
