"""Netfilter backends at scale, measured side by side in one run (needs root).

    python bench/netfilter_bench.py [--containers 1000 10000] [--backends iptables ipset nftables]

For each number of containers (one IPv4 address each, two classes) and each
backend, on a namespace lab (a node forwarding between a peer and container
101; every other container is an address from the benchmarking range
198.18.0.0/15 that only appears in rules and sets, never in traffic):

- full sync: ``rules sync`` of every container, from nothing (the command as an
  operator runs it, Python start included);
- one-container change: ``rules sync`` with one container more;
- scrape: ``GET /metrics`` of a running exporter / the bare kernel dump of the
  same counters (``iptables-save -c``, ``ipset save``, ``nft -j list table``),
  each the best of five; once with no counter changed since the scrape before
  (idle containers), once with every counter changed before each scrape (busy
  containers: the bench sets every counter anew, since no traffic may go to
  the benchmarking range);
- the exporter's CPU time (user and system, /proc/PID/stat) during each
  scrape, the least of five, next to the scrape's wall time;
- exporter peak RSS (VmHWM) after the scrapes;
- datapath: packets/s of 64-byte frames (UDP, 22 bytes of payload) forwarded
  from the peer to container 101, received as iperf3 counts them, with the
  accounting / without: the hook into FORWARD is taken out and put back
  between runs, --rounds times each, interleaved, and the medians compared
  (a virtual machine's forwarding rate wanders; interleaving shares it out).

Prints one table; docs/benchmarks.md keeps the results.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from netlab.lab import CLASS_NETWORKS, PEERS, Lab, default_containers  # noqa: E402

EXPORTER = [sys.executable, "-m", "vz_traffic_exporter"]
DUMPS = {
    "iptables": ["iptables-save", "-c", "-t", "filter"],
    "ipset": ["ipset", "save"],
    "nftables": ["nft", "-j", "list", "table", "inet", "vz_traffic"],
}
FAKE = ipaddress.IPv4Address("198.18.0.1")
PORT = 10057


def config(path: Path, lab: Lab, count: int, backend: str, state: Path) -> str:
    real = lab.containers[0]
    static = [{"veid": real.veid, "name": real.name, "ips": [real.ipv4]}]
    static += [{"veid": str(1000 + i), "ips": [str(FAKE + i)]} for i in range(count - 1)]
    data = {
        "containers": {"static": static, "discovery": ["static"]},
        "network_classes": [
            {"id": 1, "name": "peering", "networks": CLASS_NETWORKS[1]},
            {"id": 0, "name": "local", "networks": CLASS_NETWORKS[0]},
        ],
        "netfilter": {"backend": backend},
        "kernel": {"venetstat": False, "vznetstat": False, "nft_counters": False, "interfaces": False},
        "state": {"file": str(state), "poll_interval": "1h"},
    }
    path.write_text(yaml.safe_dump(data))
    return str(path)


def timed(lab: Lab, *argv: str) -> float:
    start = time.perf_counter()
    subprocess.run(["ip", "netns", "exec", lab.node, *argv], check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - start


def best(times: int, lab: Lab, *argv: str) -> float:
    return min(timed(lab, *argv) for _ in range(times))


def pps(lab: Lab, seconds: float) -> float:
    """Frames/s the container received from a saturating UDP sender on the peer."""
    real = lab.containers[0]
    server = lab.spawn(real.ns, "iperf3", "-s", "-1", "-B", real.ipv4, stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    try:
        client = ["iperf3", "-c", real.ipv4, "-B", PEERS["peering"][0], "-u", "-b", "0", "-l", "22"]
        out = subprocess.run(
            ["ip", "netns", "exec", lab.peer, *client, "-t", str(seconds), "-J"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    finally:
        server.wait(10)
    end = json.loads(out)["end"]["sum"]
    return (end["packets"] - end["lost_packets"]) / end["seconds"]


def hook(lab: Lab, backend: str, on: bool) -> None:
    """Put the accounting's hook into FORWARD, or take it out, leaving everything else."""
    if backend == "nftables":
        if on:
            timed(
                lab,
                "nft",
                "add rule inet vz_traffic forward jump count_out;"
                " add rule inet vz_traffic forward jump count_in",
            )
        else:
            timed(lab, "nft", "flush", "chain", "inet", "vz_traffic", "forward")
        return
    chain = "VZTRAFFIC-FORWARD" if backend == "iptables" else "VZTSET-FORWARD"
    timed(lab, "iptables", "-w", "-I" if on else "-D", "FORWARD", *(["1"] if on else []), "-j", chain)


def run(lab: Lab, *argv: str, stdin: str = "") -> str:
    return subprocess.run(
        ["ip", "netns", "exec", lab.node, *argv], input=stdin, check=True, capture_output=True, text=True
    ).stdout


def bump(lab: Lab, backend: str) -> None:
    """Every counter of ours one packet of 64 bytes higher, as if every container had sent or received."""
    if backend == "ipset":
        lines = []
        for line in run(lab, "ipset", "save").splitlines():
            words = line.split()
            if words[:1] == ["add"] and "packets" in words:
                at = words.index("packets")
                words[at + 1] = str(int(words[at + 1]) + 1)
                words[at + 3] = str(int(words[at + 3]) + 64)
                lines.append(" ".join(words))
        run(lab, "ipset", "restore", "-exist", stdin="\n".join(lines) + "\n")
    elif backend == "nftables":  # elements cannot be given new counters: taken out and put back
        script = []
        for item in json.loads(run(lab, "nft", "-j", "list", "table", "inet", "vz_traffic"))["nftables"]:
            nft_set = item.get("set")
            if not nft_set or not nft_set.get("elem"):
                continue
            elems = [e["elem"] for e in nft_set["elem"]]
            where = f"inet vz_traffic {nft_set['name']}"
            script.append(f"delete element {where} {{ {', '.join(e['val'] for e in elems)} }}")
            counted = [
                f"{e['val']} counter packets {e['counter']['packets'] + 1} bytes {e['counter']['bytes'] + 64}"
                for e in elems
            ]
            script.append(f"add element {where} {{ {', '.join(counted)} }}")
        run(lab, "nft", "-f", "-", stdin="\n".join(script) + "\n")
    else:  # the counting chains declared again (--noflush empties them), their rules with new counters
        lines = ["*filter"]
        rules = []
        for line in run(lab, "iptables-save", "-c", "-t", "filter").splitlines():
            if line.startswith(":VZTRAFFIC-IN-") or line.startswith(":VZTRAFFIC-OUT-"):
                lines.append(line)
            elif " -A VZTRAFFIC-IN-" in line or " -A VZTRAFFIC-OUT-" in line:
                counts, rest = line.split(" ", 1)
                packets, nbytes = counts.strip("[]").split(":")
                rules.append(f"[{int(packets) + 1}:{int(nbytes) + 64}] {rest}")
        run(lab, "iptables-restore", "-c", "--noflush", stdin="\n".join([*lines, *rules, "COMMIT"]) + "\n")


def scrape_seconds(lab: Lab) -> float:
    code = (
        "import time, urllib.request\n"
        f"t = time.perf_counter(); urllib.request.urlopen('http://127.0.0.1:{PORT}/metrics').read()\n"
        "print(time.perf_counter() - t)\n"
    )
    out = subprocess.run(
        ["ip", "netns", "exec", lab.node, sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(out.stdout)


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scrape_with_cpu(lab: Lab, pid: int) -> tuple[float, float]:
    """(wall, the exporter's CPU) of one scrape."""
    before = cpu_seconds(pid)
    wall = scrape_seconds(lab)
    return wall, cpu_seconds(pid) - before


def measure(lab: Lab, count: int, backend: str, work: Path, seconds: float, rounds: int) -> dict[str, float]:
    state = work / f"state-{backend}-{count}.json"
    cfg = config(work / f"{backend}-{count}.yaml", lab, count, backend, state)
    bigger = config(work / f"{backend}-{count}-plus1.yaml", lab, count + 1, backend, state)
    row: dict[str, float] = {"sync": timed(lab, *EXPORTER, "--config", cfg, "rules", "sync")}
    with_acct, without = [], []
    for _ in range(rounds):
        with_acct.append(pps(lab, seconds))
        hook(lab, backend, on=False)
        without.append(pps(lab, seconds))
        hook(lab, backend, on=True)
    row["accounting"], row["baseline"] = statistics.median(with_acct), statistics.median(without)
    serve = lab.spawn(
        lab.node,
        *EXPORTER,
        "--config",
        cfg,
        f"--web.listen-address=127.0.0.1:{PORT}",
        "--log.level=warn",
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                scrape_seconds(lab)
                break
            except subprocess.CalledProcessError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        idle = [scrape_with_cpu(lab, serve.pid) for _ in range(5)]
        row["scrape"], row["scrape_cpu"] = min(w for w, _ in idle), min(c for _, c in idle)
        row["dump"] = best(5, lab, *DUMPS[backend])
        busy = []
        for _ in range(5):
            bump(lab, backend)
            busy.append(scrape_with_cpu(lab, serve.pid))
        row["busy"], row["busy_cpu"] = min(w for w, _ in busy), min(c for _, c in busy)
        status = Path(f"/proc/{serve.pid}/status").read_text()
        row["rss_mib"] = (
            int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) / 1024
        )
    finally:
        serve.terminate()
        serve.wait(30)
    row["change"] = timed(lab, *EXPORTER, "--config", bigger, "rules", "sync")
    timed(lab, *EXPORTER, "--config", bigger, "rules", "remove")
    return row


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--containers", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--backends", nargs="+", default=["iptables", "ipset", "nftables"])
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each datapath run")
    parser.add_argument("--rounds", type=int, default=3, help="datapath runs with and without accounting")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    prefix = f"vzbench{os.getpid() % 1000}-"
    lab = Lab(prefix)
    rows = []
    with tempfile.TemporaryDirectory(prefix="vzt-bench-") as tmp:
        try:
            lab.build(default_containers(prefix, 1))
            for count in args.containers:
                for backend in args.backends:
                    row = measure(lab, count, backend, Path(tmp), args.seconds, args.rounds)
                    rows.append((count, backend, row))
                    print(f"  done: {count} containers, {backend}", file=sys.stderr)
        finally:
            lab.destroy()
    print(
        f"{'containers':>10} {'backend':<9} {'sync s':>7} {'change s':>8} {'idle ms':>8} {'busy ms':>8}"
        f" {'idle CPU':>8} {'busy CPU':>8}"
        f" {'dump ms':>8} {'idle/dump':>9} {'busy/dump':>9} {'RSS MiB':>8} {'kpps acct':>9}"
        f" {'kpps none':>9} {'acct/none':>9}"
    )
    for count, backend, r in rows:
        print(
            f"{count:>10} {backend:<9} {r['sync']:>7.2f} {r['change']:>8.2f} {r['scrape'] * 1e3:>8.1f}"
            f" {r['busy'] * 1e3:>8.1f} {r['scrape_cpu'] * 1e3:>8.0f} {r['busy_cpu'] * 1e3:>8.0f}"
            f" {r['dump'] * 1e3:>8.1f} {r['scrape'] / r['dump']:>9.2f}"
            f" {r['busy'] / r['dump']:>9.2f} {r['rss_mib']:>8.1f}"
            f" {r['accounting'] / 1e3:>9.1f} {r['baseline'] / 1e3:>9.1f}"
            f" {r['accounting'] / r['baseline']:>9.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
