"""The rooms of a read (vz_traffic_exporter/wiring): the inventory, the netfilter and the kernel room."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time

import pytest

from tests.conftest import ReplayRunner
from vz_traffic_exporter import privileges
from vz_traffic_exporter.config import load
from vz_traffic_exporter.discovery.prlctl import ARGV as PRLCTL
from vz_traffic_exporter.discovery.vzlist import ARGV as VZLIST
from vz_traffic_exporter.exporter import Exporter
from vz_traffic_exporter.runner import CommandError


def test_auto_reads_the_nft_counters_and_not_vznetstat_on_virtuozzo_9(write_config) -> None:  # type: ignore[no-untyped-def]
    runner = ReplayRunner(
        {
            ("nft", "list", "tables", "netdev"): "table netdev ve_101\n",
            ("nft", "-j", "list", "ruleset", "netdev"): json.dumps({"nftables": []}),
        },
        installed=("nft", "vznetstat"),
    )
    config = load(write_config("containers: {discovery: [static]}\nnetfilter: {backend: 'off'}\n"))
    exporter = Exporter(config, runner, procfs="/nonexistent", sysfs="/nonexistent")
    statuses = {s.name: s.up for s in exporter.poll().statuses}
    assert statuses == {"static": True, "nft_counters": True}
    assert not [argv for argv, _ in runner.calls if argv[0] == "vznetstat"]
    forced = load(
        write_config(
            "containers: {discovery: [static]}\nnetfilter: {backend: 'off'}\nkernel: {vznetstat: true}\n"
        )
    )
    assert [
        s.name for s in Exporter(forced, runner, procfs="/nonexistent", sysfs="/nonexistent").kernel.sources
    ] == [
        "nft_counters",
        "vznetstat",
    ]


def test_an_address_several_containers_claim_is_counted_for_none_and_logged_once(
    write_config, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    # OpenVZ 7 vzlist lists every address inside a container: a Docker bridge's (192.0.2.250 here) in several.
    listing = [
        {"ctid": "101", "name": "web", "ip": ["192.0.2.11", "192.0.2.250"]},
        {"ctid": "102", "name": "db", "ip": ["192.0.2.12", "192.0.2.250"]},
        {"ctid": "103", "name": "", "ip": ["192.0.2.250"]},
    ]
    runner = ReplayRunner({VZLIST: json.dumps(listing)}, installed=("vzlist",))
    config = load(write_config("containers: {discovery: [vzlist]}\nnetfilter: {backend: 'off'}\n"))
    config = dataclasses.replace(config, refresh_interval=0.0)  # every poll discovers again
    exporter = Exporter(config, runner, procfs="/nonexistent", sysfs="/nonexistent")
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            inventory = exporter.poll().inventory
    assert dict(inventory.owners) == {"192.0.2.11": "101", "192.0.2.12": "102"}
    assert dict(inventory.conflicts) == {"192.0.2.250": ("101", "102", "103")}
    assert caplog.text.count("192.0.2.250 is claimed by veids 101, 102, 103") == 1
    listing[1]["ip"] = ["192.0.2.12"]
    listing[2]["ip"] = []
    runner.outputs[VZLIST] = json.dumps(listing)
    with caplog.at_level(logging.INFO):
        inventory = exporter.poll().inventory
    assert inventory.owners["192.0.2.250"] == "101" and not inventory.conflicts
    assert "192.0.2.250 is claimed by one container again" in caplog.text


class SlowRunner(ReplayRunner):
    """prlctl that hangs until released, as it does while it waits for a guest."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.release = threading.Event()
        self.slow = False

    def run(self, argv, *, stdin=None, timeout=None):  # type: ignore[no-untyped-def]
        if self.slow and argv[0] == "prlctl":
            assert self.release.wait(10)
        return super().run(argv, stdin=stdin, timeout=timeout)


def test_a_slow_discovery_never_holds_up_a_scrape(write_config) -> None:  # type: ignore[no-untyped-def]
    listing = [{"envid": "101", "name": "web", "ip": "192.0.2.11"}]
    runner = SlowRunner({PRLCTL: json.dumps(listing)}, installed=("prlctl",))
    config = load(
        write_config(
            "containers: {discovery: [prlctl], discovery_timeout: 2m}\nnetfilter: {backend: 'off'}\n"
        )
    )
    config = dataclasses.replace(config, refresh_interval=0.0)
    exporter = Exporter(
        config, runner, procfs="/nonexistent", sysfs="/nonexistent", background_discovery=True
    )
    assert set(exporter.poll().inventory.containers) == {"101"}  # the first discovery is waited for
    assert runner.timeouts[PRLCTL] == 120.0  # its own timeout, not the commands' 10 s
    runner.slow = True
    listing.append({"envid": "102", "name": "db", "ip": "192.0.2.12"})
    runner.outputs[PRLCTL] = json.dumps(listing)
    start = time.monotonic()
    for _ in range(5):
        snapshot = exporter.poll()
        assert set(snapshot.inventory.containers) == {"101"}  # the last inventory
    assert time.monotonic() - start < 2  # the read that started the discovery waited half a second
    assert {s.name: s.up for s in snapshot.statuses}["prlctl"] is True
    runner.release.set()
    deadline = time.monotonic() + 5
    while set(exporter.poll().inventory.containers) != {"101", "102"}:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_without_cap_net_admin_auto_says_one_clear_line_and_runs_nothing(
    write_config, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(privileges, "may_admin_netfilter", lambda: False)
    runner = ReplayRunner({}, installed=("iptables", "ip6tables", "nft", "ipset"))
    config = load(write_config("containers: {discovery: [static]}\nkernel: {interfaces: false}\n"))
    with caplog.at_level(logging.INFO):
        exporter = Exporter(config, runner, procfs="/nonexistent", sysfs="/nonexistent")
        statuses = {s.name for s in exporter.poll().statuses}
    assert exporter.backend_name() is None and statuses == {"static"}
    lines = [r.getMessage() for r in caplog.records if "netfilter" in r.getMessage()]
    assert lines == [
        "netfilter accounting is off: every netfilter backend needs CAP_NET_ADMIN, which this process "
        f"(uid {os.geteuid()}) does not have; grant it (AmbientCapabilities=CAP_NET_ADMIN in the systemd "
        "unit) or run as root"
    ]
    backends = [
        a for a, _ in runner.calls if a[0] in ("ipset", "iptables-save") or a == ("nft", "list", "tables")
    ]
    assert backends == []  # (the nft_counters kernel source still looks for Virtuozzo 9 tables)


def test_no_containers_is_said_once(write_config, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    config = load(write_config("containers: {discovery: [static]}\nnetfilter: {backend: 'off'}\n"))
    exporter = Exporter(config, ReplayRunner({}, installed=()), procfs="/nonexistent", sysfs="/nonexistent")
    with caplog.at_level(logging.WARNING):
        exporter.poll()
        exporter.poll()
    assert [r.getMessage() for r in caplog.records] == [
        "no containers found (discovery sources: static): nothing is counted; list them in "
        "containers.static, or see why the discovery sources find none"
    ]


def test_no_accounting_objects_are_said(write_config, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    missing = CommandError(["nft"], 1, "Error: No such file or directory; did you mean table 'filter'?")
    runner = ReplayRunner(
        {("nft", "list", "tables"): "", ("nft", "-j", "list", "table", "inet", "vz_traffic"): missing},
        installed=("nft",),
    )
    config = load(
        write_config(
            "containers: {static: [{veid: '101', ips: [192.0.2.11]}], discovery: [static]}\n"
            "netfilter: {backend: nftables}\nkernel: {interfaces: false, nft_counters: false}\n"
        )
    )
    exporter = Exporter(config, runner, procfs="/nonexistent", sysfs="/nonexistent")
    with caplog.at_level(logging.WARNING):
        snapshot = exporter.poll()
    assert {s.name: s.up for s in snapshot.statuses} == {"static": True, "nftables": True}
    assert "no accounting objects of the nftables backend are installed" in caplog.text
    assert "run `vz-traffic-exporter rules sync`, or start `serve`" in caplog.text


def test_an_inventory_found_again_keeps_its_generation_and_a_changed_one_gets_a_new_one(
    write_config, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    from vz_traffic_exporter.model import Container
    from vz_traffic_exporter.wiring import Steps, inventory

    clock = [1000.0]
    monkeypatch.setattr(inventory.time, "monotonic", lambda: clock[0])
    config = load(write_config("containers: {discovery: [static], refresh_interval: 1s}\n"))
    room = inventory.InventoryRoom(config, ReplayRunner({}), "/nonexistent")
    found = [Container("101", "web", ("192.0.2.11",))]

    class Listed:
        name = "static"

        def discover(self) -> list[Container]:
            return list(found)

    room.sources = [Listed()]  # type: ignore[list-item]
    first = room.current(Steps())
    clock[0] += 2  # due again: found the same
    assert room.current(Steps()).generation == first.generation
    found.append(Container("102", "db", ("192.0.2.12",)))
    clock[0] += 2
    changed = room.current(Steps())
    assert changed.generation == first.generation + 1 and set(changed.owners) == {"192.0.2.11", "192.0.2.12"}


def test_an_idle_read_keeps_every_token_and_growth_moves_only_the_address_series() -> None:
    from tests.conftest import FIXTURES, managed_runner

    runner = managed_runner()
    exporter = Exporter(
        load(str(FIXTURES / "lab.yaml")),
        runner,
        procfs=str(FIXTURES / "empty"),
        sysfs=str(FIXTURES / "empty"),
    )
    first, idle = exporter.poll().tokens, exporter.poll().tokens
    assert first == idle and None not in dataclasses.astuple(first)
    ipv4 = ("iptables-save", "-c", "-t", "filter")
    runner.outputs[ipv4] = str(runner.outputs[ipv4]).replace(
        "[10:1280] -A VZTRAFFIC-OUT-1", "[11:1408] -A VZTRAFFIC-OUT-1"
    )
    grown = exporter.poll().tokens
    assert grown.ip != idle.ip and dataclasses.replace(grown, ip=idle.ip) == idle
