from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from vz_traffic_exporter.accounting import Accumulator, Observation
from vz_traffic_exporter.state import NotOurs, StateFile, read_boot_id

A = ("ip", "101", "192.0.2.11", "0", "out")


def accumulator() -> Accumulator:
    acc = Accumulator("3c1f2e0a-0000-4000-8000-000000000001")
    acc.update(
        "iptables", [Observation(("managed", "out", 0, "192.0.2.11"), A, 3, 1500, epoch=9)], now=1_795_000_000
    )
    return acc


def test_missing_file_is_a_fresh_start(tmp_path: Path) -> None:
    assert StateFile(str(tmp_path / "state.json")).load() is None


def test_save_then_load_round_trips_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.json"  # the directory is created
    StateFile(str(path)).save(accumulator())
    loaded = StateFile(str(path)).load()
    assert loaded is not None and loaded.total(A) == (3, 1500)
    assert loaded.boot_id == "3c1f2e0a-0000-4000-8000-000000000001"
    assert os.listdir(path.parent) == ["state.json"]
    assert json.loads(path.read_text())["version"] == 2


def test_a_save_replaces_the_old_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    state = StateFile(str(path))
    state.save(accumulator())
    acc = accumulator()
    acc.update("iptables", [Observation(("managed", "out", 0, "192.0.2.11"), A, 5, 2500, epoch=9)])
    state.save(acc)
    loaded = state.load()
    assert loaded is not None and loaded.total(A) == (5, 2500)


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ('{"version": 2, "boot_id": nul', "Expecting value"),
        ('{"version": 7}', "state format version 7, this exporter reads version 2"),
        ('{"version": 2, "boot_id": null, "counters": {}, "series": [], "resets": {}}', "malformed"),
        ("\udcff", "not UTF-8"),
        ("[" * 100_000 + "]" * 100_000, "not JSON"),
    ],
)
def test_a_bad_file_is_kept_aside_and_the_exporter_starts_fresh(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: str, why: str
) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content.encode("utf-8", "surrogateescape"))
    with caplog.at_level(logging.ERROR):
        assert StateFile(str(path)).load() is None
    assert not path.exists()
    [aside] = tmp_path.glob("state.json.bad-*")
    assert aside.read_bytes() == content.encode("utf-8", "surrogateescape")
    assert str(path) in caplog.text and why in caplog.text and str(aside) in caplog.text


def test_one_bad_row_loses_that_row_only(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = accumulator().to_state()
    good["series"] += [
        [1, 2, 3, "ip"],  # a key with too few parts
        [-5, 2, 3, "ip", "102", "192.0.2.12", "0", "out"],  # a negative total
        [10**400, 2, 3, "ip", "103", "192.0.2.13", "0", "out"],  # beyond any total
        "not a row",
    ]
    good["counters"] += [["iptables", 2**64, 0, None, "managed", "out", 0, "192.0.2.12"], [], None]
    path = tmp_path / "state.json"
    path.write_text(json.dumps(good))
    with caplog.at_level(logging.ERROR):
        loaded = StateFile(str(path)).load()
    assert loaded is not None and loaded.total(A) == (3, 1500)
    assert sorted(loaded.to_state()["series"]) == sorted(accumulator().to_state()["series"])
    assert len(loaded.to_state()["counters"]) == 1
    assert caplog.text.count("row dropped") == 7 and "-5" in caplog.text
    assert path.exists()  # the file is not put aside for bad rows


def test_whatever_is_not_our_regular_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    directory = tmp_path / "dir"
    directory.mkdir()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    foreign = tmp_path / "foreign"
    foreign.write_text("someone else's")
    link = tmp_path / "link"
    link.symlink_to(foreign)
    for path in (directory, fifo, link):
        state = StateFile(str(path))
        with pytest.raises(NotOurs, match="not a state file of ours"):
            state.load()  # a FIFO does not hang it
        with pytest.raises(NotOurs):
            state.save(accumulator())
    assert directory.is_dir() and fifo.is_fifo() and link.is_symlink()
    assert foreign.read_text() == "someone else's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "fifo", "foreign", "link"]


def test_temporary_files_of_an_interrupted_save_are_removed_at_start(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    StateFile(str(path)).save(accumulator())
    for name in (".state.json.abc123.tmp", ".state.json.x.tmp"):
        (tmp_path / name).write_text("{")
    (tmp_path / ".other.json.abc.tmp").write_text("not ours")
    assert StateFile(str(path)).load() is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.json.abc.tmp", "state.json"]


def test_saving_where_nothing_can_be_written_raises_oserror(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSError):
        StateFile(str(blocker / "state.json")).save(accumulator())


def test_boot_id_is_read_under_the_procfs_root(tmp_path: Path) -> None:
    assert read_boot_id(str(tmp_path)) is None
    (tmp_path / "sys" / "kernel" / "random").mkdir(parents=True)
    (tmp_path / "sys" / "kernel" / "random" / "boot_id").write_text("0f0e-boot\n")
    assert read_boot_id(str(tmp_path)) == "0f0e-boot"


def test_the_virtuozzo_9_floors_survive_a_restart_and_a_bad_floor_row_loses_only_itself(
    tmp_path: Path,
) -> None:
    acc = accumulator()
    key = ("101", "1", "out", "ipv4")  # veid, class, direction, family
    assert acc.floor(key, 10, 1000) == (10, 1000)
    assert acc.floor(key, 8, 900) == (10, 1000)  # a class made exclusive never goes down
    path = tmp_path / "state.json"
    StateFile(str(path)).save(acc)
    state = json.loads(path.read_text())
    assert state["floors"] == [[10, 1000, *key]]
    state["floors"].append([1, 2, "102", "1"])  # a key of too few parts
    path.write_text(json.dumps(state))
    loaded = StateFile(str(path)).load()
    assert loaded is not None and loaded.floors == {key: (10, 1000)}
    assert loaded.floor(key, 9, 950) == (10, 1000)  # after the restart too
