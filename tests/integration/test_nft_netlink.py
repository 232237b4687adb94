"""The nftables backend's table read over netlink equals ``nft -j list table``, element by element."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import ROOT, NodeLab, _bindir, _lab
from .test_ipset_netlink import both_readings

pytestmark = pytest.mark.netns

# Run in the node's namespace: both readings, as JSON.
BOTH = f"""
import dataclasses, json, subprocess, sys
sys.path.insert(0, {str(ROOT)!r})
from vz_traffic_exporter.netfilter.nftables import NftablesReader
from vz_traffic_exporter.runner import SystemRunner
readings = [dataclasses.asdict(NftablesReader(SystemRunner(use_netlink=n)).current()) for n in (True, False)]
print(json.dumps(readings))
"""


@pytest.fixture
def nftables_lab(tmp_path: Path) -> Iterator[NodeLab]:
    if shutil.which("nft") is None:
        pytest.skip("nft is not installed")
    yield from _lab(_bindir(tmp_path, "nft"), tmp_path, "nftables")


def test_the_table_over_netlink_equals_nft_json_element_by_element(nftables_lab: NodeLab) -> None:
    lab = nftables_lab
    config, (netlink, tool) = both_readings(lab, BOTH)
    assert netlink == tool
    assert tool["exists"] and tool["handle"] and tool["fingerprint"].startswith("fp_") and tool["maps"]
    counting = {name: elements for name, elements in tool["sets"].items()}
    assert {name[len(name.split("_")[0]) - 1] for name in counting} == {"4", "6"}  # both families
    elements = [v for e in counting.values() for v in e.values()]
    assert len(elements) == 4 * 2 * 2 * 2  # containers x addresses x classes x directions
    assert sum(1 for packets, nbytes in elements if packets and nbytes) >= 24  # after traffic
    assert "netlink" not in lab.exporter(config, "dump").stderr  # the exporter reads it so, no fallback
