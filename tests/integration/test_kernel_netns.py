"""Kernel sources against real kernel counters: the Virtuozzo 9 nft layout, host-side veths."""

from __future__ import annotations

import json
from typing import Optional

import pytest

from netlab.lab import CLASS_NETWORKS, PEERS, host_ifname
from netlab.vz9 import nft_script, table_name

from .conftest import NodeLab

pytestmark = pytest.mark.netns

BYTES, PACKETS = "vz_traffic_container_bytes_total", "vz_traffic_container_packets_total"
# The classes as the Virtuozzo 9 node has them: it counts classes 1..15, and no class-0 holes.
VZ9_CLASSES = [{"id": 1, "name": "peering", "networks": CLASS_NETWORKS[1]}]
KERNEL_ONLY = {
    "netfilter": {"backend": "off"},
    "kernel": {"nft_counters": True, "interfaces": True, "venetstat": False, "vznetstat": False},
    "network_classes": VZ9_CLASSES,
}


def container_series(text: str) -> dict[tuple[str, ...], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (
            s.name,
            s.labels.get("veid", ""),
            s.labels.get("class", s.labels.get("interface", "")),
            s.labels["direction"],
            s.labels.get("family", ""),
        ): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name.startswith(("vz_traffic_container_", "vz_traffic_interface_")) and s.name.endswith("_total")
    }


def nft_counters(lab: NodeLab) -> dict[tuple[str, ...], float]:
    """The kernel's own values, keyed like container_series."""
    data = json.loads(lab.node_cmd("nft", "-j", "list", "counters").stdout)
    out: dict[tuple[str, ...], float] = {}
    for item in data["nftables"]:
        c = item.get("counter")
        if not c or not c["table"].startswith("ve_"):
            continue
        _, kind, klass = c["name"].split("_")
        direction = "in" if kind[0] == "i" else "out"
        family = "ipv4" if kind[1] == "4" else "ipv6"
        veid = c["table"][3:]
        out[(BYTES, veid, klass, direction, family)] = c["bytes"]
        out[(PACKETS, veid, klass, direction, family)] = c["packets"]
    return out


def install_vz9_layout(lab: NodeLab, classes: Optional[dict[int, list[str]]] = None) -> None:
    for ct in lab.containers:
        nets = classes or {1: CLASS_NETWORKS[1]}
        script = nft_script(ct.veid, host_ifname(ct), "vpeer", [ct.ipv4, ct.ipv6], nets)
        lab.ns(lab.node, "nft", "-f", "-", stdin=script)
        lab.operator_tables.add(("nft", f"table netdev {table_name(ct.veid)}"))  # Virtuozzo's, not ours


def test_virtuozzo9_nft_counters_are_exported_exactly_and_resets_absorbed(kernel_lab: NodeLab) -> None:
    lab = kernel_lab
    install_vz9_layout(lab)
    config = lab.write_config(lab.containers, **KERNEL_ONLY)
    sent: dict[tuple[str, ...], int] = {}
    for i, ct in enumerate(lab.containers):
        for fam, ip in ((0, ct.ipv4), (1, ct.ipv6)):
            family = ("ipv4", "ipv6")[fam]
            out = lab.send_udp(ct.ns, ip, PEERS["peering"][fam], 5 + i, 300 + 10 * i)
            lab.send_udp(ct.ns, ip, PEERS["world"][fam], 3, 100)  # class 0: not counted on VZ9
            back = lab.send_udp(lab.peer, PEERS["peering"][fam], ip, 4 + i, 700)
            sent[(BYTES, ct.veid, "1", "out", family)] = out
            sent[(BYTES, ct.veid, "1", "in", family)] = back
    server = lab.start_serve(config)
    before = container_series(lab.scrape()[1])
    kernel = nft_counters(lab)
    assert {k: v for k, v in before.items() if k[0] in (BYTES, PACKETS)} == kernel
    assert {k: v for k, v in before.items() if k[0] == BYTES} == sent

    victim = lab.containers[0]
    lab.node_cmd("nft", "reset", "counters", "table", "netdev", table_name(victim.veid))
    middle = container_series(lab.scrape()[1])
    more = lab.send_udp(victim.ns, victim.ipv4, PEERS["peering"][0], 2, 50)
    after = container_series(lab.scrape()[1])
    for key, value in before.items():
        assert middle[key] >= value and after[key] >= middle[key], key
    assert (
        after[(BYTES, victim.veid, "1", "out", "ipv4")]
        == before[(BYTES, victim.veid, "1", "out", "ipv4")] + more
    )
    resets = [
        line
        for line in lab.scrape()[1].splitlines()
        if line.startswith('vz_traffic_counter_resets_total{source="nft_counters"}')
    ]
    assert resets and float(resets[0].split()[-1]) >= 1
    server.terminate()
    assert server.wait(10) == 0


def test_a_re_created_virtuozzo9_table_is_a_new_epoch_even_above_the_old_values(kernel_lab: NodeLab) -> None:
    """A container restart deletes its table and makes it again: with more traffic after than before, only
    the table's handle (the counters' epoch) tells."""
    lab = kernel_lab
    install_vz9_layout(lab)
    config = lab.write_config(lab.containers, **KERNEL_ONLY)
    ct = lab.containers[0]
    key = (BYTES, ct.veid, "1", "out", "ipv4")
    first = lab.send_udp(ct.ns, ct.ipv4, PEERS["peering"][0], 3, 200)
    server = lab.start_serve(config)
    assert container_series(lab.scrape()[1])[key] == first

    lab.node_cmd("nft", "delete", "table", "netdev", table_name(ct.veid))
    script = nft_script(ct.veid, host_ifname(ct), "vpeer", [ct.ipv4, ct.ipv6], {1: CLASS_NETWORKS[1]})
    lab.ns(lab.node, "nft", "-f", "-", stdin=script)
    second = lab.send_udp(
        ct.ns, ct.ipv4, PEERS["peering"][0], 5, 300
    )  # more than before, in bytes and packets
    assert nft_counters(lab)[key] == second > first
    got = container_series(lab.scrape()[1])
    assert got[key] == first + second
    assert got[(PACKETS, ct.veid, "1", "out", "ipv4")] == 3 + 5
    server.terminate()
    assert server.wait(10) == 0


def test_nested_virtuozzo9_classes_are_made_exclusive_and_overlapping_ones_left_out(
    kernel_lab: NodeLab,
) -> None:
    """Virtuozzo 9 counts a packet in every class holding its peer: class 1 = everything, 2 inside it."""
    lab = kernel_lab
    classes = {1: ["0.0.0.0/0", "::/0"], 2: CLASS_NETWORKS[1]}
    install_vz9_layout(lab, classes)
    nested = [{"id": k, "name": f"class{k}", "networks": v} for k, v in classes.items()]
    config = lab.write_config(lab.containers, **{**KERNEL_ONLY, "network_classes": nested})
    ct = lab.containers[0]
    peering = lab.send_udp(ct.ns, ct.ipv4, PEERS["peering"][0], 6, 400)  # class 2, and class 1 on VZ9
    world = lab.send_udp(ct.ns, ct.ipv4, PEERS["world"][0], 4, 300)  # class 1 only
    kernel = nft_counters(lab)
    assert kernel[(BYTES, ct.veid, "1", "out", "ipv4")] == peering + world  # counted twice by the kernel
    got = container_series(lab.exporter(config, "dump").stdout)
    assert got[(BYTES, ct.veid, "2", "out", "ipv4")] == peering
    assert got[(BYTES, ct.veid, "1", "out", "ipv4")] == world  # exclusive: the nested class taken out
    assert got[(PACKETS, ct.veid, "1", "out", "ipv4")] == 4
    # A class only partly inside another cannot be made exclusive: both are left out, and said.
    partial = [
        {"id": 1, "name": "a", "networks": ["198.51.100.0/24"]},
        {"id": 2, "name": "b", "networks": ["198.51.100.0/25", "203.0.113.0/24"]},
    ]
    config = lab.write_config(lab.containers, **{**KERNEL_ONLY, "network_classes": partial})
    dump = lab.exporter(config, "dump")
    got = container_series(dump.stdout)
    assert not [k for k in got if k[0] == BYTES and k[2] in ("1", "2") and k[4] == "ipv4"]
    assert "class 1 overlaps other classes" in dump.stderr and "class 2 overlaps other classes" in dump.stderr


def read_sys(lab: NodeLab, name: str) -> dict[str, int]:
    text = lab.ns(
        lab.node,
        "sh",
        "-c",
        f"cd /sys/class/net/{name}/statistics && echo $(cat rx_bytes rx_packets tx_bytes tx_packets)",
    )
    rx_b, rx_p, tx_b, tx_p = (int(v) for v in text.split())
    return {"out_bytes": rx_b, "out_packets": rx_p, "in_bytes": tx_b, "in_packets": tx_p}


def test_host_side_veth_counters_equal_the_kernels(kernel_lab: NodeLab) -> None:
    lab = kernel_lab
    config = lab.write_config(lab.containers, **KERNEL_ONLY)
    ct = lab.containers[1]
    name = host_ifname(ct)
    start = read_sys(lab, name)
    out = lab.send_udp(ct.ns, ct.ipv4, PEERS["world"][0], 9, 400)
    back = lab.send_udp(lab.peer, PEERS["world"][1], ct.ipv6, 6, 250)
    for _ in range(5):  # compare at a quiet moment: the same kernel values before and after the dump
        kernel = read_sys(lab, name)
        got = container_series(lab.exporter(config, "dump").stdout)
        if read_sys(lab, name) == kernel:
            break
    key = ("vz_traffic_interface_{}_total", ct.veid, name)
    for direction in ("in", "out"):
        for unit in ("bytes", "packets"):
            assert got[(key[0].format(unit), ct.veid, name, direction, "")] == kernel[f"{direction}_{unit}"]
    # Directions from the container's view, Ethernet header included on the wire; a
    # few hundred bytes of IPv6 link control (MLD reports after link-up) may ride along.
    assert out + 9 * 14 <= kernel["out_bytes"] - start["out_bytes"] <= out + 9 * 14 + 512
    assert back + 6 * 14 <= kernel["in_bytes"] - start["in_bytes"] <= back + 6 * 14 + 512
    assert {k[2] for k in got if k[0].startswith("vz_traffic_interface_")} == {
        host_ifname(c) for c in lab.containers
    }
