"""Nothing lost: restarts, SIGKILL, zeroing, re-created rules, reboots and moved addresses.

Every test runs the real exporter on a namespace lab with real rules and real
traffic, and ends by comparing exported totals with the traffic sent, to the
byte.  Background polls are made rare (1h) where a test must prove that a
reset is caught by what the exporter knows, not by a lucky poll.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from netlab.lab import PEERS, SINK_PORT, LabContainer, default_containers, host_ifname

from .conftest import NodeLab, parse_ip_series

pytestmark = pytest.mark.netns

BYTES, PACKETS = "vz_traffic_ip_bytes_total", "vz_traffic_ip_packets_total"


def resets(lab: NodeLab) -> tuple[str, str]:
    return ("vz_traffic_counter_resets_total", lab.backend)


RARE = {"poll_interval": "1h"}


class Ledger:
    """Traffic sent per series, and every scrape, checked to never decrease."""

    def __init__(self, lab: NodeLab) -> None:
        self.lab = lab
        self.sent: dict[tuple[str, ...], int] = {}
        self.scrapes: list[dict[tuple[str, ...], float]] = []

    def send(
        self, ct: LabContainer, family: int, direction: str, count: int, size: int, owner: str = ""
    ) -> None:
        """count datagrams of size bytes between ct and the class-1 peer, counted for owner."""
        ip = (ct.ipv4, ct.ipv6)[family]
        peer = PEERS["peering"][family]
        if direction == "out":
            nbytes = self.lab.send_udp(ct.ns, ip, peer, count, size)
        else:
            nbytes = self.lab.send_udp(self.lab.peer, peer, ip, count, size)
        key = (owner or ct.veid, ip, "1", direction)
        self.sent[(BYTES, *key)] = self.sent.get((BYTES, *key), 0) + nbytes
        self.sent[(PACKETS, *key)] = self.sent.get((PACKETS, *key), 0) + count

    def scrape(self) -> dict[tuple[str, ...], float]:
        status, body = self.lab.scrape()
        assert status == 200
        got = parse_ip_series(body)
        if self.scrapes:
            for key, value in self.scrapes[-1].items():
                if key[0] in (BYTES, PACKETS, "vz_traffic_counter_resets_total"):
                    assert got.get(key, 0) >= value, f"{key} went down: {value} -> {got.get(key)}"
        self.scrapes.append(got)
        return got

    def check(self, got: dict[tuple[str, ...], float]) -> None:
        assert {k: got.get(k) for k in self.sent} == self.sent


def traffic(ledger: Ledger, ct: LabContainer, scale: int) -> None:
    """Both directions, IPv4 and IPv6; scale sets how much."""
    for family in (0, 1):
        ledger.send(ct, family, "out", 3 * scale, 400)
        ledger.send(ct, family, "in", 2 * scale, 700)


def stop(server: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGTERM) -> int:
    server.send_signal(sig)
    return server.wait(20)


def test_sigkill_after_a_poll_then_restart_loses_nothing(lab: NodeLab) -> None:
    config = lab.write_config(lab.containers, state={**RARE, "file": str(lab.state_file)})
    ledger = Ledger(lab)
    ct = lab.containers[0]
    server = lab.start_serve(config)
    traffic(ledger, ct, 2)
    ledger.check(ledger.scrape())  # this read is saved
    assert stop(server, signal.SIGKILL) == -signal.SIGKILL

    traffic(ledger, ct, 3)  # while nobody is reading
    lab.start_serve(config)
    got = ledger.scrape()
    ledger.check(got)
    assert got[resets(lab)] == 0


def test_sigterm_reads_and_saves_once_more_before_exit(lab: NodeLab) -> None:
    config = lab.write_config(lab.containers, state={**RARE, "file": str(lab.state_file)})
    ledger = Ledger(lab)
    ct = lab.containers[1]
    server = lab.start_serve(config)
    traffic(ledger, ct, 2)  # no scrape, and no background poll for an hour
    assert stop(server) == 0
    state = json.loads(lab.state_file.read_text())
    assert state["version"] == 2 and state["series"]

    # The kernel forgets everything it counted; only the state file remembers.
    lab.exporter(config, "rules", "remove")
    lab.exporter(config, "rules", "sync")
    lab.start_serve(config)
    ledger.check(ledger.scrape())


def serving_after_some_traffic(lab: NodeLab) -> tuple[str, Ledger, LabContainer]:
    """A serving exporter (background polls an hour apart) that has read some traffic of container 103."""
    config = lab.write_config(lab.containers, state={**RARE, "file": str(lab.state_file)})
    ledger = Ledger(lab)
    ct = lab.containers[2]
    lab.start_serve(config)
    traffic(ledger, ct, 1)
    ledger.check(ledger.scrape())
    return config, ledger, ct


def test_zeroing_with_more_traffic_after_than_before_loses_nothing(iptables_lab: NodeLab) -> None:
    lab = iptables_lab
    _, ledger, ct = serving_after_some_traffic(lab)

    # iptables -Z, then more traffic than before, before the next read.  The
    # epoch marker tells; ip6tables-nft cannot hold a marker, so there the
    # zeroing must show as a decrease: less traffic after than before.
    lab.iptables("ipv4", "-Z")
    lab.iptables("ipv6", "-Z")
    ledger.send(ct, 0, "out", 20, 400)
    ledger.send(ct, 0, "in", 15, 700)
    markers_v6 = "legacy" in lab.bindir
    ledger.send(ct, 1, "out", 20 if markers_v6 else 1, 400)
    ledger.send(ct, 1, "in", 15 if markers_v6 else 1, 700)
    got = ledger.scrape()
    ledger.check(got)
    assert got[resets(lab)] >= 4


def test_re_created_objects_with_more_traffic_after_than_before_lose_nothing(lab: NodeLab) -> None:
    config, ledger, ct = serving_after_some_traffic(lab)

    # Our rules (or table) deleted and re-created by another process, then more
    # traffic than ever before the next read: the new epoch tells.
    lab.exporter(config, "rules", "remove")
    lab.exporter(config, "rules", "sync")
    traffic(ledger, ct, 12)
    ledger.check(ledger.scrape())

    # Deleted again, and re-created by the serving exporter itself.
    lab.exporter(config, "rules", "remove")
    ledger.check(ledger.scrape())
    traffic(ledger, ct, 14)
    got = ledger.scrape()
    ledger.check(got)
    assert got[resets(lab)] >= 4  # the 4 counters of ct's addresses re-created by another process


@pytest.fixture
def procfs(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "proc"
    (root / "sys" / "kernel" / "random").mkdir(parents=True)
    yield root


def boot(procfs: Path, boot_id: str) -> str:
    (procfs / "sys" / "kernel" / "random" / "boot_id").write_text(f"{boot_id}\n")
    return f"--path.procfs={procfs}"


def test_a_node_reboot_continues_the_totals(lab: NodeLab, procfs: Path) -> None:
    config = lab.write_config(lab.containers, state={**RARE, "file": str(lab.state_file)})
    ledger = Ledger(lab)
    ct = lab.containers[0]
    server = lab.start_serve(config, boot(procfs, "6a0c55b4-5e4c-4d8e-8e8c-000000000001"))
    traffic(ledger, ct, 2)
    ledger.check(ledger.scrape())
    assert stop(server) == 0

    # The node goes down: namespaces, rules and counters are gone.
    lab.destroy()
    lab.build(default_containers(lab.prefix))
    ct = lab.containers[0]
    lab.start_serve(config, boot(procfs, "6a0c55b4-5e4c-4d8e-8e8c-000000000002"))
    traffic(ledger, ct, 5)  # more than before the reboot
    got = ledger.scrape()
    ledger.check(got)
    assert got[resets(lab)] >= 1


def fake_vzlist(lab: NodeLab, **sections: object) -> tuple[str, Callable[[dict[str, list[str]]], None]]:
    """A vzlist on the exporter's PATH, the config that uses it (with more sections), and a way to change
    what it lists."""
    fake = lab.workdir / "fakebin"
    fake.mkdir()
    listing = fake / "vzlist.json"
    script = fake / "vzlist"
    script.write_text(f'#!/bin/sh\n[ "$*" = "-a -j -o ctid,name,ip" ] || exit 2\ncat {listing}\n')
    script.chmod(0o755)
    lab.bindir = f"{fake}:{lab.bindir}"

    def inventory(ips_of: dict[str, list[str]]) -> None:
        entries = [{"ctid": veid, "name": f"ct{veid}", "ip": ips} for veid, ips in ips_of.items()]
        listing.write_text(json.dumps(entries))

    inventory({ct.veid: [ct.ipv4, ct.ipv6] for ct in lab.containers})
    config = lab.write_config(
        [],
        containers={"discovery": ["vzlist"], "refresh_interval": "1s"},
        state={**RARE, "file": str(lab.state_file)},
        **sections,
    )
    return config, inventory


def test_an_address_moved_to_another_container_keeps_both_series_exact(lab: NodeLab) -> None:
    old, new = lab.containers[0], lab.containers[1]
    config, inventory = fake_vzlist(lab)
    ledger = Ledger(lab)
    lab.start_serve(config)
    ledger.send(old, 0, "out", 6, 300)
    ledger.send(old, 0, "in", 4, 500)
    ledger.check(ledger.scrape())

    # The address moves: off the old container, onto the new one, routed to it.
    lab.ns(old.ns, "ip", "addr", "del", f"{old.ipv4}/32", "dev", "eth0")
    lab.ns(new.ns, "ip", "addr", "add", f"{old.ipv4}/32", "dev", "eth0")
    node_if = host_ifname(new)
    lab.ns(lab.node, "ip", "route", "replace", old.ipv4, "dev", node_if)
    lab.ns(
        lab.node, "ip", "neigh", "replace", old.ipv4, "lladdr", new.mac, "dev", node_if, "nud", "permanent"
    )
    inventory({old.veid: [old.ipv6], new.veid: [new.ipv4, new.ipv6, old.ipv4]})
    moved = LabContainer(new.veid, new.name, old.ipv4, new.ipv6, new.ns, new.mac)
    time.sleep(1.2)  # past the discovery refresh interval
    ledger.scrape()  # the new inventory is read
    ledger.send(moved, 0, "out", 9, 300)
    ledger.send(moved, 0, "in", 7, 500)
    got = ledger.scrape()
    ledger.check(got)  # the old owner kept its total, the new one has only what came after
    assert got[resets(lab)] == 0


def test_a_corrupt_state_file_is_kept_aside_and_the_exporter_starts(iptables_lab: NodeLab) -> None:
    lab = iptables_lab
    lab.state_file.write_text('{"version": 2, "series": [[["ip", "101"')  # torn by a full disk
    config = lab.write_config(lab.containers)
    log = lab.workdir / "exporter.log"
    with log.open("wb") as stderr:
        server = lab.start_serve(config, stderr=stderr)
        ledger = Ledger(lab)
        traffic(ledger, lab.containers[0], 1)
        ledger.check(ledger.scrape())
        assert stop(server) == 0
    [aside] = lab.workdir.glob("state.json.bad-*")
    assert aside.read_text().startswith('{"version": 2, "series"')
    assert json.loads(lab.state_file.read_text())["version"] == 2  # a good one was written since
    text = log.read_text()
    assert "level=error" in text and str(aside) in text and "starting from zero" in text


def test_a_container_discovery_missed_for_a_while_resumes_its_series(lab: NodeLab) -> None:
    config, inventory = fake_vzlist(lab)
    ledger = Ledger(lab)
    ct = lab.containers[2]
    lab.start_serve(config)
    traffic(ledger, ct, 2)
    ledger.check(ledger.scrape())

    inventory({other.veid: [other.ipv4, other.ipv6] for other in lab.containers if other is not ct})
    time.sleep(1.2)  # past the discovery refresh interval
    ledger.check(ledger.scrape())  # its rules are gone; its series stay, unchanged
    assert f"{ct.ipv4}/32" not in lab.save("ipv4")

    inventory({other.veid: [other.ipv4, other.ipv6] for other in lab.containers})
    time.sleep(1.2)
    ledger.scrape()  # back: new rules, counting from zero
    traffic(ledger, ct, 3)
    got = ledger.scrape()
    ledger.check(got)
    assert got[resets(lab)] == 0


def test_switching_backends_removes_the_old_objects_and_keeps_the_totals(iptables_lab: NodeLab) -> None:
    lab = iptables_lab
    ledger = Ledger(lab)
    ct = lab.containers[0]
    for backend in ("iptables", "ipset", "nftables", "iptables"):
        lab.backend = backend
        config = lab.write_config(lab.containers, state={**RARE, "file": str(lab.state_file)})
        server = lab.start_serve(config)
        traffic(ledger, ct, 2)
        got = ledger.scrape()
        ledger.check(got)  # one series per address, whichever backend counted it, nothing of the pause lost
        firewall = lab.firewall()
        assert ("VZTRAFFIC-FORWARD" in firewall) == (backend == "iptables")
        assert ("VZTSET-FORWARD" in firewall) == (backend == "ipset")
        assert ("vztraffic4-out-0" in firewall) == (backend == "ipset")
        assert ("table inet vz_traffic" in firewall) == (backend == "nftables")
        assert stop(server) == 0
        traffic(ledger, ct, 1)  # while it is down: the next start reads the objects before it removes them


def test_what_a_container_counted_while_the_exporter_was_down_is_kept_when_it_left(lab: NodeLab) -> None:
    """Gone by the next start: its objects are read, for it, before the start removes them."""
    ledger = Ledger(lab)
    ct, others = lab.containers[2], lab.containers[:2]
    server = lab.start_serve(lab.write_config(lab.containers, state={**RARE, "file": str(lab.state_file)}))
    traffic(ledger, ct, 1)
    ledger.check(ledger.scrape())
    assert stop(server) == 0

    traffic(ledger, ct, 2)  # its last traffic, while nobody is reading; then it is destroyed
    lab.start_serve(lab.write_config(others, state={**RARE, "file": str(lab.state_file)}))
    ledger.check(ledger.scrape())
    assert ct.ipv4 not in lab.firewall()


PAPER_NET = "2001:db8:1::/64"  # addresses of containers that exist only in the config, routed to a lab one
PAPER_DATAGRAM = 100  # payload bytes of each datagram sent to a paper address


def paper_config(lab: NodeLab, numbers: range) -> str:
    """The lab's containers plus one container per number (from 1) with the address 2001:db8:1::<number>."""
    config = Path(lab.write_config(lab.containers, state={**RARE, "file": str(lab.state_file)}))
    data = yaml.safe_load(config.read_text())
    data["containers"]["static"] += [{"veid": f"9{n:04d}", "ips": [f"2001:db8:1::{n:x}"]} for n in numbers]
    config.write_text(yaml.safe_dump(data))
    return str(config)


def send_to_paper(lab: NodeLab, numbers: range) -> int:
    """One datagram from the class-1 peer to each paper address; returns the IP-level bytes of one."""
    code = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n"
        "s.bind((sys.argv[1], 0))\n"
        "for a in sys.argv[2:]:\n"
        f"    s.sendto(bytes({PAPER_DATAGRAM}), (a, {SINK_PORT}))\n"
    )
    peer = PEERS["peering"][1]
    lab.ns(lab.peer, sys.executable, "-c", code, peer, *(f"2001:db8:1::{n:x}" for n in numbers))
    return 40 + 8 + PAPER_DATAGRAM


def paper_bytes(got: dict[tuple[str, ...], float], n: int) -> float:
    return got.get((BYTES, f"9{n:04d}", f"2001:db8:1::{n:x}", "1", "in"), 0)


def test_addresses_added_where_others_were_deleted_start_at_zero(lab: NodeLab) -> None:
    """The kernel keeps a deleted set element's counters in its slot and may give the slot to the next
    address added: 800 addresses with counts, 200 deleted and 200 others added, in one restart."""
    lab.ns(lab.node, "ip", "-6", "route", "add", PAPER_NET, "dev", host_ifname(lab.containers[0]))
    kept, gone, new = range(201, 801), range(1, 201), range(801, 1001)
    server = lab.start_serve(paper_config(lab, range(1, 801)))
    size = send_to_paper(lab, range(1, 801))
    got = Ledger(lab).scrape()
    assert [n for n in range(1, 801) if paper_bytes(got, n) != size] == []
    assert stop(server) == 0

    server = lab.start_serve(paper_config(lab, range(201, 1001)))
    got = Ledger(lab).scrape()
    assert [n for n in new if paper_bytes(got, n) != 0] == []  # nothing inherited
    assert [n for n in [*kept, *gone] if paper_bytes(got, n) != size] == []  # nothing lost
    send_to_paper(lab, new)
    got = Ledger(lab).scrape()
    assert [n for n in [*kept, *new] if paper_bytes(got, n) != size] == []
    assert stop(server) == 0
