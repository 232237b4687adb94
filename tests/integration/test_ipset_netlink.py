"""The ipset backend's sets read over netlink equal ``ipset save``, element by element, after real traffic."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netlab.lab import default_containers

from .conftest import ROOT, NodeLab, _lab
from .test_iptables_netns import Expected, send_mixed_traffic

pytestmark = pytest.mark.netns

# Run in the node's namespace: both readings, as JSON.
BOTH = f"""
import json, subprocess, sys
sys.path.insert(0, {str(ROOT)!r})
from vz_traffic_exporter.netfilter import nlipset
from vz_traffic_exporter.netfilter.netlink import sessions
from vz_traffic_exporter.runner import SystemRunner
from vz_traffic_exporter.netfilter.ipset import SET_PREFIX, parse_ipset_save
from vz_traffic_exporter.netfilter.layout import stamp_of
netlink = {{
    name: [kind, {{e: [p, b, None if c is None else stamp_of(c)] for e, (p, b, c) in found.items()}}]
    for name, (kind, found) in nlipset.dump(SET_PREFIX, sessions(SystemRunner().netlink())).items()
}}
saved = {{
    name: [s.type, {{e: list(v) for e, v in s.elements.items()}}]
    for name, s in parse_ipset_save(subprocess.run(["ipset", "save"], capture_output=True, text=True,
                                                   check=True).stdout).items()
}}
print(json.dumps([netlink, saved]))
"""


def both_readings(lab: NodeLab, script: str) -> tuple[str, Any]:
    """Sync four containers (one without traffic), send traffic, and run script in the node: its JSON."""
    lab.add_container(default_containers(lab.prefix, 4)[3])
    config = lab.write_config(lab.containers)
    lab.exporter(config, "rules", "sync")
    send_mixed_traffic(lab, Expected(lab.containers), host=True)
    return config, json.loads(lab.ns(lab.node, sys.executable, "-c", script))


@pytest.fixture
def ipset_lab(variant: str, tmp_path: Path) -> Iterator[NodeLab]:
    if shutil.which("ipset") is None:
        pytest.skip("ipset is not installed")
    yield from _lab(variant, tmp_path, "ipset")


def test_sets_over_netlink_equal_ipset_save_element_by_element(ipset_lab: NodeLab) -> None:
    lab = ipset_lab
    config, (netlink, saved) = both_readings(lab, BOTH)
    assert netlink == saved
    counting = [name for name in saved if "-net-" not in name]
    nets = [name for name in saved if "-net-" in name]
    assert {name[len("vztraffic")] for name in counting} == {"4", "6"} and nets  # both families, both kinds
    elements = [(e, v) for name in counting for e, v in saved[name][1].items()]
    assert len(elements) == 4 * 2 * 2 * 2  # containers x addresses x classes x directions
    assert sum(1 for _, (packets, nbytes, _) in elements if packets and nbytes) >= 24  # after traffic
    assert all(stamp for _, (_, _, stamp) in elements)  # every element's epoch
    # The exporter reads them so: the metrics equal the byte-exact truth (the backend's own test), and
    # its dump shows no fallback to the tool.
    assert "netlink" not in lab.exporter(config, "dump").stderr
