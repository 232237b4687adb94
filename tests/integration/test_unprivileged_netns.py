"""Every backend as an unprivileged user holding only the systemd unit's capabilities.

The exporter runs as nobody under setpriv, with the ambient, inheritable and
bounding capabilities that packaging/vz-traffic-exporter.service grants, from
a world-readable copy of itself and its packages and with the system python3:
it installs its rules at start, counts real traffic to the byte, and saves
its state in a directory that nobody owns.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import ROOT, NodeLab, parse_ip_series
from .test_iptables_netns import Expected, ip_series, send_mixed_traffic

pytestmark = pytest.mark.netns

UNIT = ROOT / "packaging" / "vz-traffic-exporter.service"
NOBODY = 65534
PORT = 10058


def unit_capabilities() -> list[str]:
    """The capabilities the unit grants, as setpriv names them (net_admin, ...)."""
    text = UNIT.read_text()
    ambient = re.search(r"(?m)^AmbientCapabilities=(.*)$", text)
    bounding = re.search(r"(?m)^CapabilityBoundingSet=(.*)$", text)
    assert ambient and bounding and ambient.group(1).split() == bounding.group(1).split()
    return [cap.lower().removeprefix("cap_") for cap in ambient.group(1).split()]


@pytest.fixture(scope="module")
def runtime() -> Iterator[Path]:
    """The exporter and its packages where nobody can read them (as the package installs them)."""
    python = shutil.which("python3", path="/usr/bin:/bin")
    if os.geteuid() != 0 or shutil.which("setpriv") is None or python is None:
        pytest.skip("needs root, setpriv and a system python3")
    version = subprocess.run(
        [python, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True
    )
    if version.stdout.strip() != str(sys.version_info[:2]):
        pytest.skip("the system python3 is not this Python version: the compiled packages would not load")
    where = Path(tempfile.mkdtemp(prefix="vzt-runtime-"))
    try:
        lib = where / "lib"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-compile",
                "--target",
                str(lib),
                str(ROOT),
            ],
            check=True,
            capture_output=True,
        )
        for wrapper in lib.glob("libxtwrapper*.so"):
            wrapper.rename(lib / "libxtwrapper.so")
        subprocess.run(["chmod", "-R", "a+rX", str(where)], check=True)
        yield where
    finally:
        shutil.rmtree(where)


def test_every_backend_counts_exactly_as_nobody_with_the_units_capabilities(
    lab: NodeLab, runtime: Path
) -> None:
    caps = ",".join(f"+{cap}" for cap in unit_capabilities())
    state = Path(tempfile.mkdtemp(prefix="vzt-state-"))
    # The lab's iptables variant, where nobody can reach it (the test's own directory is root's only):
    # without it, nobody's PATH lookup would fall through to the host's default variant.
    tools = Path(tempfile.mkdtemp(prefix="vzt-bin-"))
    for link in Path(lab.bindir).iterdir():
        (tools / link.name).symlink_to(link.resolve())
    os.chmod(tools, 0o755)
    workdir = lab.workdir
    lab.path = f"{tools}:/usr/sbin:/usr/bin:/sbin:/bin"
    try:
        os.chown(state, NOBODY, NOBODY)
        lab.workdir = state  # the state file goes where nobody can write
        config = lab.write_config(lab.containers)
        os.chmod(config, 0o644)
        os.chmod(state, 0o755)
        exporter = [
            "setpriv",
            f"--reuid={NOBODY}",
            f"--regid={NOBODY}",
            "--clear-groups",
            f"--inh-caps=-all,{caps}",
            f"--ambient-caps=-all,{caps}",
            f"--bounding-set=-all,{caps}",
            "/usr/bin/python3",
            "-c",
            f"import sys; sys.path.insert(0, {str(runtime / 'lib')!r}); "
            "from vz_traffic_exporter.cli import main; sys.exit(main())",
        ]
        proc = lab.start_serve(
            config, "--log.level=warn", port=PORT, exporter=exporter, stderr=subprocess.PIPE
        )
        status, body = lab.scrape(PORT)
        assert status == 200
        assert parse_ip_series(body)[("vz_traffic_source_up", lab.backend)] == 1, body
        expected = Expected(lab.containers)
        send_mixed_traffic(lab, expected, host=True)
        status, body = lab.scrape(PORT)
        assert ip_series(parse_ip_series(body)) == expected.values
        # ip netns exec, env and setpriv each exec the next: the process is the exporter.
        status_text = Path(f"/proc/{proc.pid}/status").read_text()
        assert re.search(rf"(?m)^Uid:\s+{NOBODY}\s+{NOBODY}\s", status_text)
        assert re.search(r"(?m)^CapEff:\s+0*3000$", status_text)  # CAP_NET_ADMIN (12) and CAP_NET_RAW (13)
        proc.terminate()
        assert proc.wait(30) == 0
        assert (state / "state.json").stat().st_uid == NOBODY
        variant = "legacy" if "legacy" in lab.bindir else "nft"
        assert bool(lab.tables()["legacy ip"]) == (variant == "legacy")  # the variant under test was used
    finally:
        lab.workdir = workdir
        lab.path = None
        shutil.rmtree(state, ignore_errors=True)
        shutil.rmtree(tools, ignore_errors=True)


def test_without_the_capabilities_it_says_which_are_missing(iptables_lab: NodeLab, runtime: Path) -> None:
    lab = iptables_lab
    readable = Path(tempfile.mkdtemp(prefix="vzt-config-"))
    os.chmod(readable, 0o755)
    config = str(readable / "config.yaml")
    program = (
        f"import sys; sys.path.insert(0, {str(runtime / 'lib')!r}); "
        "from vz_traffic_exporter.cli import main; sys.exit(main())"
    )
    try:
        shutil.copy(lab.write_config(lab.containers), config)
        os.chmod(config, 0o644)
        proc = lab.node_cmd(
            "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all", "/usr/bin/python3", "-c", program, "--config", config, "rules", "sync",
            check=False,
        )  # fmt: skip
    finally:
        shutil.rmtree(readable)
    assert proc.returncode == 1
    legacy = "iptables-legacy" in os.path.realpath(Path(lab.bindir) / "iptables")
    wanted = "CAP_NET_ADMIN and CAP_NET_RAW" if legacy else "CAP_NET_ADMIN,"
    assert (
        f"the iptables backend needs {wanted} which this process (uid {NOBODY}) does not have" in proc.stderr
    )
