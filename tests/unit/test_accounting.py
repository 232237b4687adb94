from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vz_traffic_exporter.accounting import Accumulator, Observation

A = ("ip", "101", "192.0.2.11", "0", "out")
B = ("ip", "102", "192.0.2.11", "0", "out")


def feed(acc: Accumulator, reads: list[list[tuple[str, tuple[str, ...], int]]]) -> None:
    for read in reads:
        acc.update("iptables", [Observation(c, s, v, v * 100) for c, s, v in read])


@pytest.mark.parametrize(
    ("reads", "total_a", "total_b", "resets"),
    [
        ([[("r", A, 5)], [("r", A, 8)]], 8, 0, 0),  # growth
        ([[("r", A, 5)], [("r", A, 2)]], 7, 0, 1),  # zeroed, then 2 more
        ([[("r", A, 5)], [("r", A, 5)], [("r", A, 0)]], 5, 0, 1),  # zeroed, nothing since
        ([[("r", A, 5)], [("r", B, 9)]], 5, 4, 0),  # address moved to 102
        ([[("r", A, 5)], [], [("r", A, 3)]], 8, 0, 0),  # rule gone, re-created
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
    acc.started("iptables", "r")  # we deleted and re-created the rule
    feed(acc, [[("r", A, 9)]])
    assert acc.total(A) == (14, 1400)


def test_sources_are_independent() -> None:
    acc = Accumulator()
    acc.update("a", [Observation("r", A, 1, 1)])
    acc.update("b", [Observation("r", A, 1, 1)])
    acc.update("a", [])  # a complete read of a without r does not forget b's r
    acc.update("b", [Observation("r", A, 3, 3)])
    assert acc.total(A) == (4, 4)  # 1 from a, 3 from b


# Property: one kernel counter grows, is reset to zero now and then, and is
# read at random moments by an owner that may change.  Totals never decrease
# and never exceed the true traffic; they equal it whenever every reset came
# right after a read and showed as a decrease at the next read.
events = st.lists(
    st.one_of(
        st.tuples(st.just("grow"), st.integers(1, 10**6)),
        st.tuples(st.just("reset"), st.just(0)),
        st.tuples(st.just("read"), st.sampled_from([0, 1])),
    ),
    max_size=80,
)


@settings(max_examples=400, deadline=None)
@given(events)
def test_totals_never_decrease_and_are_exact_when_resets_are_visible(script: list) -> None:  # type: ignore[type-arg]
    acc = Accumulator()
    raw = true_total = last_read = 0
    exact = True
    grew_since_read = reset_since_read = False
    seen = {A: 0, B: 0}
    for kind, value in [*script, ("read", 0)]:
        if kind == "grow":
            raw += value
            true_total += value
            grew_since_read = True
        elif kind == "reset":
            if grew_since_read or reset_since_read:
                exact = False  # the kernel erased traffic nobody read
            raw = 0
            reset_since_read = True
        else:
            if reset_since_read and raw >= last_read and raw > 0:
                exact = False  # the reset does not show as a decrease
            acc.update("x", [Observation("rule", (A, B)[value], raw, raw)])
            last_read = raw
            grew_since_read = reset_since_read = False
            for key in (A, B):
                assert acc.total(key)[1] >= seen[key]
                seen[key] = acc.total(key)[1]
    counted = acc.total(A)[1] + acc.total(B)[1]
    assert counted <= true_total
    if exact:
        assert counted == true_total


@pytest.mark.parametrize(
    ("reads", "packets", "nbytes", "resets"),
    [
        # (packets, bytes) of a vznetstat counter: 32-bit packets, 64-bit bytes
        ([(2**32 - 10, 5000), (5, 6000)], 2**32 + 5, 6000, 0),  # packets wrapped, bytes grew: a wrap
        ([(2**32 - 10, 5000), (5, 100)], 2**32 - 10 + 5, 5100, 1),  # both went down: a reset
        ([(100, 5000), (100, 5000)], 100, 5000, 0),
    ],
)
def test_narrow_packet_counters_wrap(
    reads: list[tuple[int, int]], packets: int, nbytes: int, resets: int
) -> None:
    acc = Accumulator()
    for p, b in reads:
        acc.update("vznetstat", [Observation("c", A, p, b, packet_bits=32)])
    assert acc.total(A) == (packets, nbytes)
    assert acc.resets["vznetstat"] == resets


def test_state_round_trip_continues_exactly() -> None:
    import json

    acc = Accumulator()
    acc.update("iptables", [Observation(("managed", "out", 1, "192.0.2.11"), A, 10, 1280)])
    acc.update("iptables", [Observation(("managed", "out", 1, "192.0.2.11"), A, 4, 512)])  # a reset
    restored = Accumulator.from_state(json.loads(json.dumps(acc.to_state())))
    restored.update("iptables", [Observation(("managed", "out", 1, "192.0.2.11"), A, 6, 768)])
    assert restored.total(A) == (16, 2048)
    assert restored.resets["iptables"] == 1


@pytest.mark.parametrize("state", [{}, {"version": 99}, {"version": 1, "last": [[1]]}, []])
def test_bad_state_is_refused(state: object) -> None:
    with pytest.raises(ValueError):
        Accumulator.from_state(state)  # type: ignore[arg-type]
