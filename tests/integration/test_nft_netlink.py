"""The nftables backend's table read over netlink equals ``nft -j list table``, element by element."""

from __future__ import annotations

import json
import sys

import pytest

from netlab.lab import default_containers

from .conftest import ROOT, NodeLab
from .test_iptables_netns import Expected, send_mixed_traffic

pytestmark = pytest.mark.netns

# Run in the node's namespace: both readings, as JSON.
BOTH = f"""
import dataclasses, json, subprocess, sys
sys.path.insert(0, {str(ROOT)!r})
from vz_traffic_exporter.rules.nftables import NftablesRules
from vz_traffic_exporter.runner import SystemRunner
readings = [dataclasses.asdict(NftablesRules(SystemRunner(), netlink=n).current()) for n in (True, False)]
print(json.dumps(readings))
"""


def test_the_table_over_netlink_equals_nft_json_element_by_element(lab: NodeLab) -> None:
    if lab.backend != "nftables":
        pytest.skip("the nftables backend's table")
    lab.add_container(default_containers(lab.prefix, 4)[3])  # one with no traffic: zeros read too
    config = lab.write_config(lab.containers)
    lab.exporter(config, "rules", "sync")
    send_mixed_traffic(lab, Expected(lab.containers), host=True)
    netlink, tool = json.loads(lab.ns(lab.node, sys.executable, "-c", BOTH))
    assert netlink == tool
    assert tool["exists"] and tool["handle"] and tool["fingerprint"].startswith("fp_") and tool["maps"]
    counting = {name: elements for name, elements in tool["sets"].items()}
    assert {name[len(name.split("_")[0]) - 1] for name in counting} == {"4", "6"}  # both families
    elements = [v for e in counting.values() for v in e.values()]
    assert len(elements) == 4 * 2 * 2 * 2  # containers x addresses x classes x directions
    assert sum(1 for packets, nbytes in elements if packets and nbytes) >= 24  # after traffic
    assert "netlink" not in lab.exporter(config, "dump").stderr  # the exporter reads it so, no fallback
