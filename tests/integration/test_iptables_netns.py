"""Byte-exact accounting with real iptables (legacy and nf_tables) and real traffic."""

from __future__ import annotations

import time
from collections import defaultdict

import pytest

from netlab.lab import NODE_V4, NODE_V6, PEERS, LabContainer, default_containers

from .conftest import NodeLab, parse_ip_series

pytestmark = pytest.mark.netns

BYTES, PACKETS = "vz_traffic_ip_bytes_total", "vz_traffic_ip_packets_total"
FOREIGN = {
    "ipv4": [
        ["-A", "FORWARD", "-i", "vpeer", "-p", "tcp", "--dport", "25", "-j", "DROP"],
        ["-A", "INPUT", "-p", "icmp", "-j", "ACCEPT"],
    ],
    "ipv6": [
        ["-A", "FORWARD", "-p", "tcp", "--dport", "25", "-j", "REJECT"],
        ["-A", "INPUT", "-p", "ipv6-icmp", "-j", "ACCEPT"],
    ],
}


class Expected:
    """What the exporter must show: every (veid, ip, class, direction), zeros included."""

    def __init__(self, containers: list[LabContainer]) -> None:
        self.values: dict[tuple[str, ...], float] = defaultdict(float)
        for ct in containers:
            for ip in (ct.ipv4, ct.ipv6):
                for klass in ("0", "1"):
                    for direction in ("in", "out"):
                        for metric in (BYTES, PACKETS):
                            self.values[(metric, ct.veid, ip, klass, direction)] = 0

    def add(self, ct: LabContainer, ip: str, klass: int, direction: str, count: int, nbytes: int) -> None:
        self.values[(PACKETS, ct.veid, ip, str(klass), direction)] += count
        self.values[(BYTES, ct.veid, ip, str(klass), direction)] += nbytes


def ip_series(values: dict[tuple[str, ...], float]) -> dict[tuple[str, ...], float]:
    return {k: v for k, v in values.items() if k[0] in (BYTES, PACKETS)}


def send_mixed_traffic(lab: NodeLab, expected: Expected, host: bool) -> None:
    """Each container talks to peers of class 1, class 0 and the class-0 hole, both ways,
    IPv4 and IPv6, with its own counts and sizes; and to the node itself."""
    for i, ct in enumerate(lab.containers):
        for family, ip in ((0, ct.ipv4), (1, ct.ipv6)):
            for j, (peer, klass) in enumerate((("peering", 1), ("world", 0), ("hole", 0))):
                peer_ip = PEERS[peer][family]
                count, size = 3 + i + j, 100 + 37 * i + 11 * j + family
                sent = lab.send_udp(ct.ns, ip, peer_ip, count, size)
                expected.add(ct, ip, klass, "out", count, sent)
                count, size = 2 + j, 900 - 50 * i - 7 * j
                sent = lab.send_udp(lab.peer, peer_ip, ip, count, size)
                expected.add(ct, ip, klass, "in", count, sent)
            node_ip = (NODE_V4, NODE_V6)[family]
            sent = lab.send_udp(ct.ns, ip, node_ip, 4, 64 + i)
            sent_back = lab.send_udp(lab.node, node_ip, ip, 5, 32 + i)
            if host:
                expected.add(ct, ip, 0, "out", 4, sent)
                expected.add(ct, ip, 0, "in", 5, sent_back)


def add_foreign_rules(lab: NodeLab) -> None:
    for family, rules in FOREIGN.items():
        for rule in rules:
            lab.iptables(family, *rule)


def test_counts_are_byte_exact_sync_is_idempotent_and_remove_leaves_no_trace(lab: NodeLab) -> None:
    add_foreign_rules(lab)
    before = lab.firewall()
    config = lab.write_config(lab.containers)

    assert "changes" in lab.exporter(config, "rules", "sync").stdout
    expected = Expected(lab.containers)
    send_mixed_traffic(lab, expected, host=True)
    first = ip_series(lab.dump(config))
    assert first == expected.values

    # A second sync changes nothing and keeps every counter.
    assert "(0 changes)" in lab.exporter(config, "rules", "sync").stdout
    assert ip_series(lab.dump(config)) == expected.values

    # Adding a container keeps the others' counters.
    new = default_containers(lab.prefix, 4)[3]
    lab.add_container(new)
    bigger = lab.write_config(lab.containers)
    lab.exporter(bigger, "rules", "sync")
    after = ip_series(lab.dump(bigger))
    assert {k: v for k, v in after.items() if k[1] != new.veid} == expected.values
    assert {v for k, v in after.items() if k[1] == new.veid} == {0}
    sent = lab.send_udp(new.ns, new.ipv4, PEERS["peering"][0], 7, 200)
    assert lab.dump(bigger)[(BYTES, new.veid, new.ipv4, "1", "out")] == sent

    # Foreign rules were there throughout; removal leaves the tables as they were.
    for family in FOREIGN:
        assert "--dport 25" in lab.save(family)
    lab.exporter(bigger, "rules", "remove")
    assert lab.firewall() == before


def test_sync_and_remove_leave_the_table_list_as_found(lab: NodeLab) -> None:
    """No nat, mangle, raw or security table is made; a filter table we made goes with our rules."""
    before = lab.tables()
    config = lab.write_config(lab.containers)
    lab.exporter(config, "rules", "sync")
    lab.exporter(config, "rules", "sync")
    lab.exporter(config, "rules", "remove")
    after = lab.tables()
    # Legacy: the kernel's filter table, once made, cannot be removed; nothing else may appear.
    for kind in ("legacy ip", "legacy ip6"):
        assert set(after[kind]) <= {"filter", *before[kind]}, after
    assert after["nft"] == before["nft"]


def test_an_operators_filter_table_stays_and_the_one_we_made_goes(lab: NodeLab) -> None:
    if lab.backend not in ("iptables", "ipset") or "legacy" in lab.bindir:
        pytest.skip("tables made by iptables-nft")
    lab.iptables("ipv4", "-A", "INPUT", "-s", PEERS["world"][0], "-j", "ACCEPT")  # the operator's
    before = lab.tables()
    assert before["nft"] == ["table ip filter"]
    config = lab.write_config(lab.containers)
    lab.exporter(config, "rules", "sync")
    assert lab.tables()["nft"] == ["table ip filter", "table ip6 filter"]
    lab.exporter(config, "rules", "remove")
    assert lab.tables() == before
    assert f"-A INPUT -s {PEERS['world'][0]}/32 -j ACCEPT" in lab.save("ipv4")


def test_host_traffic_false_counts_only_forwarded_traffic(lab: NodeLab) -> None:
    config = lab.write_config(lab.containers, netfilter={"host_traffic": False})
    lab.exporter(config, "rules", "sync")
    assert "VZTRAFFIC-INPUT" not in lab.save("ipv4")
    expected = Expected(lab.containers)
    send_mixed_traffic(lab, expected, host=False)
    assert ip_series(lab.dump(config)) == expected.values
    lab.exporter(config, "rules", "remove")


def add_wiki_rules(lab: NodeLab) -> None:
    """Exactly the OpenVZ wiki recipe: one -s and one -d rule per address, no target."""
    for ct in lab.containers:
        for ip, family in ((ct.ipv4, "ipv4"), (ct.ipv6, "ipv6")):
            lab.iptables(family, "-A", "FORWARD", "-s", ip)
            lab.iptables(family, "-A", "FORWARD", "-d", ip)


def test_adopted_wiki_rules_are_exported_per_veid(iptables_lab: NodeLab) -> None:
    lab = iptables_lab
    add_wiki_rules(lab)
    ct = lab.containers[0]
    lab.iptables("ipv4", "-A", "FORWARD", "-s", ct.ipv4)  # the same rule twice
    before = lab.save("ipv4")
    config = lab.write_config(lab.containers, netfilter={"manage_rules": False})

    out_bytes = lab.send_udp(ct.ns, ct.ipv4, PEERS["peering"][0], 10, 300)
    in_bytes = lab.send_udp(lab.peer, PEERS["world"][1], ct.ipv6, 6, 120)
    got = lab.dump(config)
    assert got[(BYTES, "101", ct.ipv4, "0", "out")] == out_bytes  # the twin counts the same packets
    assert got[(PACKETS, "101", ct.ipv4, "0", "out")] == 10
    assert got[(BYTES, "101", ct.ipv6, "0", "in")] == in_bytes
    assert got[(BYTES, "102", lab.containers[1].ipv4, "0", "out")] == 0
    assert len([k for k in got if k[0] == BYTES]) == 12  # 3 containers x 2 IPs x 2 directions
    assert lab.save("ipv4") == before  # adopted mode never writes


def test_adopted_rules_zeroed_and_grown_past_their_old_value_lose_nothing(iptables_lab: NodeLab) -> None:
    """iptables -Z, then more traffic than before, before the next read: the marker tells."""
    lab = iptables_lab
    add_wiki_rules(lab)
    operator = {family: lab.save(family) for family in ("ipv4", "ipv6")}
    config = lab.write_config(
        lab.containers,
        netfilter={"manage_rules": False},
        state={"poll_interval": "1h", "file": str(lab.state_file)},
    )
    server = lab.start_serve(config)
    ct = lab.containers[0]
    key, key6 = (BYTES, ct.veid, ct.ipv4, "0", "out"), (BYTES, ct.veid, ct.ipv6, "0", "in")
    first = lab.send_udp(ct.ns, ct.ipv4, PEERS["peering"][0], 4, 300)
    first6 = lab.send_udp(lab.peer, PEERS["world"][1], ct.ipv6, 3, 200)
    seen = parse_ip_series(lab.scrape()[1])
    assert (seen[key], seen[key6]) == (first, first6)
    assert "VZTRAFFIC-ADOPTED" in lab.save("ipv4")  # the one object adopted mode makes
    lab.iptables("ipv4", "-Z")
    lab.iptables("ipv6", "-Z")
    second = lab.send_udp(ct.ns, ct.ipv4, PEERS["peering"][0], 9, 300)  # past the old value
    second6 = lab.send_udp(lab.peer, PEERS["world"][1], ct.ipv6, 7, 200)
    final = parse_ip_series(lab.scrape()[1])
    assert final[key] == first + second
    if "legacy" in lab.bindir:
        assert final[key6] == first6 + second6
    else:  # ip6tables-nft cannot set a rule's counters: no marker, zeroing seen as a decrease only
        assert second6 <= final[key6] <= first6 + second6
    server.terminate()
    server.wait(10)
    lab.exporter(config, "rules", "remove")
    for family, before in operator.items():
        assert lab.save(family) == before  # the operator's rules, and nothing of ours


def test_counter_zeroing_never_decreases_exported_values(iptables_lab: NodeLab) -> None:
    lab = iptables_lab
    config = lab.write_config(lab.containers)
    server = lab.start_serve(config)
    ct = lab.containers[1]
    key = (BYTES, ct.veid, ct.ipv4, "1", "out")
    key6 = (BYTES, ct.veid, ct.ipv6, "0", "in")
    first = lab.send_udp(ct.ns, ct.ipv4, PEERS["peering"][0], 40, 500)
    first6 = lab.send_udp(lab.peer, PEERS["world"][1], ct.ipv6, 30, 400)
    status, body = lab.scrape()
    assert status == 200
    seen = parse_ip_series(body)
    assert (seen[key], seen[key6]) == (first, first6)

    lab.iptables("ipv4", "-Z")
    lab.iptables("ipv6", "-Z")
    values = [seen]
    for _ in range(3):
        values.append(parse_ip_series(lab.scrape()[1]))
    second = lab.send_udp(ct.ns, ct.ipv4, PEERS["peering"][0], 5, 500)
    second6 = lab.send_udp(lab.peer, PEERS["world"][1], ct.ipv6, 3, 400)
    time.sleep(1.5)  # let a background poll run as well
    final = parse_ip_series(lab.scrape()[1])
    values.append(final)
    assert (final[key], final[key6]) == (first + second, first6 + second6)
    for earlier, later in zip(values, values[1:]):
        for k, v in earlier.items():
            if k[0] in (BYTES, PACKETS):
                assert later[k] >= v, k
    assert final[("vz_traffic_counter_resets_total", "iptables")] >= 2
    server.terminate()
    assert server.wait(10) == 0


def test_missing_iptables_flips_source_up_and_metrics_still_answer(iptables_lab: NodeLab) -> None:
    lab = iptables_lab
    config = lab.write_config(lab.containers, netfilter={"backend": "iptables"})
    lab.path = "/usr/bin:/bin"  # no iptables on this PATH
    lab.start_serve(config)
    status, body = lab.scrape()
    assert status == 200
    got = parse_ip_series(body)
    assert got[("vz_traffic_source_up", "iptables")] == 0
    assert got[("vz_traffic_source_up", "static")] == 1
    assert lab.scrape(path="/")[0] == 200


def test_containers_discovered_by_vzlist_are_accounted(lab: NodeLab) -> None:
    """A vzlist on PATH printing an OpenVZ 7 style recorded output drives the rules."""
    import json

    listing = [{"ctid": ct.veid, "name": f"vz-{ct.veid}", "ip": [ct.ipv4, ct.ipv6]} for ct in lab.containers]
    fake = lab.workdir / "fakebin"
    fake.mkdir()
    (fake / "vzlist.json").write_text(json.dumps(listing, indent=2) + "\n")
    script = fake / "vzlist"
    script.write_text(f'#!/bin/sh\n[ "$*" = "-a -j -o ctid,name,ip" ] || exit 2\ncat {fake}/vzlist.json\n')
    script.chmod(0o755)
    lab.bindir = f"{fake}:{lab.bindir}"
    config = lab.write_config([], containers={"discovery": ["vzlist"]})
    lab.exporter(config, "rules", "sync")
    ct = lab.containers[2]
    sent = lab.send_udp(ct.ns, ct.ipv6, PEERS["peering"][1], 11, 333)
    got = lab.dump(config)
    assert got[(BYTES, ct.veid, ct.ipv6, "1", "out")] == sent
    assert got[("vz_traffic_source_up", "vzlist")] == 1
    assert got[("vz_traffic_container_info", "103", "vz-103")] == 1
    lab.exporter(config, "rules", "remove")
