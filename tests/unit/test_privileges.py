from __future__ import annotations

from pathlib import Path

from vz_traffic_exporter.privileges import CAP_NET_ADMIN, CAP_NET_RAW, effective_capabilities, problems

STATUS = (
    "Name:\tpython3\nUid:\t65534\t65534\t65534\t65534\nCapInh:\t0000000000003000\nCapEff:\t0000000000003000\n"
)


def test_the_effective_mask_is_read_from_proc_status() -> None:
    assert effective_capabilities(STATUS) == 1 << CAP_NET_ADMIN | 1 << CAP_NET_RAW
    assert effective_capabilities("Name:\tx\n") is None


def test_each_backend_says_what_it_lacks(tmp_path: Path) -> None:
    admin = 1 << CAP_NET_ADMIN
    assert problems(0, 0, "nftables", False, None) == []  # root has everything
    assert problems(65534, admin, "nftables", False, None) == []
    assert problems(65534, admin, "iptables", False, None) == []  # iptables-nft: CAP_NET_ADMIN only
    (legacy,) = problems(65534, admin, "iptables", True, None)
    assert "the iptables backend needs CAP_NET_RAW, which this process (uid 65534) does not have" in legacy
    (none,) = problems(65534, 0, "ipset", False, None)
    assert "needs CAP_NET_ADMIN" in none and "AmbientCapabilities=" in none
    assert problems(65534, 0, None, False, None) == []  # netfilter off: nothing needed


def test_an_unwritable_state_directory_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "missing"  # no directory: not writable, whoever asks
    (found,) = problems(65534, 1 << CAP_NET_ADMIN, None, False, str(missing / "state.json"))
    assert f"its directory {missing} is not writable by uid 65534" in found
    assert problems(65534, 1 << CAP_NET_ADMIN, None, False, str(tmp_path / "state.json")) == []
