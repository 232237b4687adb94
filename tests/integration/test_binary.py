"""make binary: the exporter as one static binary, run in a bare root that has no Python and no C library,
counting real traffic to the byte with the ipset and the legacy iptables backends."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import NodeLab, _bindir, _lab, parse_ip_series
from .test_iptables_netns import Expected, ip_series, send_mixed_traffic

pytestmark = pytest.mark.netns

ROOT = Path(__file__).resolve().parents[2]
# The host tools the exporter calls there, under the names it calls them by.
TOOLS = {
    "ipset": "ipset",
    **{
        f"{base}{suffix}": f"{base}-legacy{suffix}"
        for base in ("iptables", "ip6tables")
        for suffix in ("", "-save", "-restore")
    },
}
LIBRARY = re.compile(r"(/\S+\.so[.\d]*)")


def libraries(path: str) -> set[str]:
    """The shared libraries a host program loads (its loader included), by ldd."""
    proc = subprocess.run(["ldd", path], capture_output=True, text=True, check=True)
    return {m.group(1) for m in LIBRARY.finditer(proc.stdout)}


class BareRoot:
    """A directory holding the binary, the host tools it calls and their libraries, nothing else; each
    command runs chrooted there in a private mount namespace with /proc, /sys, /dev, /run and a /tmp of its
    own, in the lab's node namespace."""

    def __init__(self, base: Path, binary: Path, netns: str) -> None:
        self.base, self.netns = base, netns
        for sub in ("proc", "sys", "dev", "tmp", "run", "sbin", "etc", "var/lib"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy2(binary, base / "sbin" / "vz-traffic-exporter")
        needed: set[str] = set()
        for name, tool in TOOLS.items():
            found = shutil.which(tool)
            assert found, f"{tool} is not installed"
            real = os.path.realpath(found)
            self._copy(real)
            link = base / "sbin" / name
            if not link.exists():
                link.symlink_to(real)
            needed |= libraries(real)
        for library in needed:
            self._copy(os.path.realpath(library), library)
        # iptables-legacy's own extensions (the bundle has its own copy for python-iptables).
        extensions = Path(os.path.realpath("/usr/lib/x86_64-linux-gnu/xtables"))
        shutil.copytree(extensions, base / str(extensions).lstrip("/"), dirs_exist_ok=True)

    def _copy(self, source: str, path: str = "") -> None:
        target = self.base / (path or source).lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            shutil.copy2(source, target)

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        root = shlex.quote(str(self.base))
        script = (
            "set -e; "
            f"for fs in proc sys dev; do mount --rbind /$fs {root}/$fs; done; "
            f"mount -t tmpfs tmpfs {root}/tmp; "
            f'exec env -i PATH=/sbin "$(command -v chroot)" {root} "$@"'
        )
        command = ["ip", "netns", "exec", self.netns, "unshare", "--mount", "--propagation", "private"]
        command += ["sh", "-c", script, "sh", *argv]
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise AssertionError(f"{argv} in the bare root exited {proc.returncode}:\n{proc.stderr}")
        return proc

    def exporter(self, config: str, *args: str) -> str:
        return self.run("/sbin/vz-traffic-exporter", "--config", config, *args).stdout


Bare = tuple[NodeLab, BareRoot, str]


@pytest.fixture(params=["auto", "iptables"])
def bare(request: pytest.FixtureRequest, static_binary: Path, tmp_path: Path) -> Iterator[Bare]:
    """The lab, its bare root and the backend configured (auto: no nft there, as on EL7: ipset)."""
    if shutil.which("ipset") is None:
        pytest.skip("ipset is not installed")
    backend = "ipset" if request.param == "auto" else request.param
    for lab in _lab(_bindir(tmp_path, "legacy"), tmp_path, backend):
        yield lab, BareRoot(tmp_path / "bare", static_binary, lab.node), request.param


def readelf(option: str, binary: Path) -> str:
    return subprocess.run(["readelf", option, str(binary)], capture_output=True, text=True, check=True).stdout


def test_the_binary_needs_nothing_of_the_host(static_binary: Path) -> None:
    """No interpreter asked of the host, no library, hence no glibc symbol version either."""
    header = readelf("-lW", static_binary)
    assert "INTERP" not in header and "DYNAMIC" not in header, header
    assert "NEEDED" not in readelf("-dW", static_binary)
    assert "GLIBC_" not in readelf("-VW", static_binary)
    file_says = subprocess.run(["file", "-b", str(static_binary)], capture_output=True, text=True).stdout
    if file_says:
        assert "statically linked" in file_says, file_says


def test_the_binary_counts_to_the_byte_in_a_bare_root(bare: Bare) -> None:
    lab, root, configured = bare
    assert not (root.base / "usr" / "bin" / "python3").exists() and not list(root.base.glob("**/libpython*"))
    # The lab's configuration, with the state where the bare root keeps it.
    config = lab.write_config(
        lab.containers, netfilter={"backend": configured}, state={"file": "/var/lib/state.json"}
    )
    shutil.copy(config, root.base / "etc" / "config.yaml")
    assert "configuration is valid" in root.exporter("/etc/config.yaml", "check-config")
    assert "changes" in root.exporter("/etc/config.yaml", "rules", "sync")
    # Written from the bundle (libiptc through python-iptables, or iptables-restore for set matches),
    # read back by the host's own tools.
    ours = {"iptables": ":VZTRAFFIC-", "ipset": ":VZTSET-"}[lab.backend]
    assert ours in lab.save("ipv4") and ours in lab.save("ipv6")
    expected = Expected(lab.containers)
    send_mixed_traffic(lab, expected, host=True)
    dump = root.exporter("/etc/config.yaml", "dump")
    assert f'vz_traffic_source_up{{source="{lab.backend}"}} 1.0' in dump
    assert ip_series(parse_ip_series(dump)) == expected.values
    root.exporter("/etc/config.yaml", "rules", "remove")
    assert ours not in lab.save("ipv4") + lab.save("ipv6")
