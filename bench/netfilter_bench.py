"""Netfilter backends at scale, measured side by side in one run (needs root).

    python bench/netfilter_bench.py [--containers 10000] [--backends iptables ipset nftables]
                                    [--large 100000] [--adopted 10000]

For each number of containers (one IPv4 address each, two classes) and each
backend, then for --large containers on the set backends (ipset, nftables),
on a namespace lab (a node forwarding between a peer and container 101;
every other container is an address from the benchmarking range
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

Then the operator's own rules (--adopted addresses, ``manage_rules: false``):
two rules per address in FORWARD as the OpenVZ wiki writes them
(``iptables -A FORWARD -s IP``, ``-d IP``), scraped idle and busy against
``iptables-save -c -t filter``.

Prints one table, with each figure's target and whether it was met;
docs/benchmarks.md keeps the results.
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
# Targets: (idle / dump, busy / dump, RSS MiB), and for adopted rules an absolute scrape time.
TARGETS = {"iptables": (1.5, 3.0, 80.0), "ipset": (1.0, 1.5, 80.0), "nftables": (1.0, 1.5, 80.0)}
LARGE_BUSY_S, LARGE_RSS_MIB = 3.0, 400.0  # at --large: busy <= 3 s plus the kernel's own dump, RSS
SYNC_S = 1.5  # a full rules sync of 10,000 containers
FORWARDING = 0.90  # packets/s with accounting / without, set backends
# retailnext/iptables_exporter on the same 20,000 wiki rules, measured once on this machine (not vendored):
# idle 206-310 ms, busy 225-312 ms, RSS 51-53 MiB.  Target: a scrape at most half of it, RSS at most it.
ADOPTED_SCRAPE_S, ADOPTED_RSS_MIB = 0.110, 52.0


def config(path: Path, lab: Lab, count: int, backend: str, state: Path, manage: bool = True) -> str:
    real = lab.containers[0]
    static = [{"veid": real.veid, "name": real.name, "ips": [real.ipv4]}]
    static += [{"veid": str(1000 + i), "ips": [str(FAKE + i)]} for i in range(count - 1)]
    data = {
        "containers": {"static": static, "discovery": ["static"]},
        "network_classes": [
            {"id": 1, "name": "peering", "networks": CLASS_NETWORKS[1]},
            {"id": 0, "name": "local", "networks": CLASS_NETWORKS[0]},
        ],
        "netfilter": {"backend": backend, "manage_rules": manage},
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
    if backend == "adopted":  # the whole filter table given again, every other counter as it was
        lines = []
        for line in run(lab, "iptables-save", "-c", "-t", "filter").splitlines():
            counts, _, rest = line.partition(" ")
            if rest.startswith("-A FORWARD -s 198.18.") or rest.startswith("-A FORWARD -d 198.18."):
                packets, nbytes = counts.strip("[]").split(":")
                line = f"[{int(packets) + 1}:{int(nbytes) + 64}] {rest}"
            lines.append(line)
        run(lab, "iptables-restore", "-c", stdin="\n".join(lines) + "\n")
    elif backend == "ipset":
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


def wiki_rules(lab: Lab, count: int, add: bool) -> None:
    """Two accounting rules per address in FORWARD, as the OpenVZ wiki makes them, or those taken out."""
    ips = [str(FAKE + i) for i in range(count)]
    if add:
        rules = [f"-A FORWARD -{flag} {ip}/32" for ip in ips for flag in ("s", "d")]
        run(lab, "iptables-restore", "--noflush", stdin="\n".join(["*filter", *rules, "COMMIT"]) + "\n")
    else:
        rules = [f"-D FORWARD -{flag} {ip}/32" for ip in ips for flag in ("s", "d")]
        run(lab, "iptables-restore", "--noflush", stdin="\n".join(["*filter", *rules, "COMMIT"]) + "\n")


def scrapes(lab: Lab, cfg: str, backend: str, dump: list[str], times: int) -> dict[str, float]:
    """Idle and busy scrapes of a running exporter, with its CPU, the bare dump, and the peak RSS."""
    row: dict[str, float] = {}
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
        deadline = time.monotonic() + 600
        while True:
            try:
                scrape_seconds(lab)
                break
            except subprocess.CalledProcessError:
                if time.monotonic() > deadline or serve.poll() is not None:
                    raise
                time.sleep(0.2)
        idle = [scrape_with_cpu(lab, serve.pid) for _ in range(times)]
        row["scrape"], row["scrape_cpu"] = min(w for w, _ in idle), min(c for _, c in idle)
        row["dump"] = best(times, lab, *dump)
        busy = []
        for _ in range(times):
            bump(lab, backend)
            busy.append(scrape_with_cpu(lab, serve.pid))
        row["busy"], row["busy_cpu"] = min(w for w, _ in busy), min(c for _, c in busy)
        status = Path(f"/proc/{serve.pid}/status").read_text()
        row["rss_mib"] = (
            int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) / 1024
        )
    finally:
        serve.terminate()
        serve.wait(60)
    return row


def measure(
    lab: Lab, count: int, backend: str, work: Path, seconds: float, rounds: int, times: int
) -> dict[str, float]:
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
    row.update(scrapes(lab, cfg, backend, DUMPS[backend], times))
    row["change"] = timed(lab, *EXPORTER, "--config", bigger, "rules", "sync")
    timed(lab, *EXPORTER, "--config", bigger, "rules", "remove")
    state.unlink(missing_ok=True)
    return row


def measure_adopted(lab: Lab, count: int, work: Path, times: int) -> dict[str, float]:
    state = work / f"state-adopted-{count}.json"
    cfg = config(work / f"adopted-{count}.yaml", lab, count, "iptables", state, manage=False)
    wiki_rules(lab, count, add=True)
    try:
        row = scrapes(lab, cfg, "adopted", DUMPS["iptables"], times)
    finally:
        wiki_rules(lab, count, add=False)
        timed(lab, *EXPORTER, "--config", cfg, "rules", "remove")  # adopted mode's marker
    state.unlink(missing_ok=True)
    return row


def verdicts(count: int, backend: str, r: dict[str, float], large: bool) -> list[str]:
    """Each target the row has, as 'name figure <= target: met' or 'missed'."""
    out = []

    def check(name: str, figure: float, target: float, unit: str = "", at_least: bool = False) -> None:
        met = figure >= target if at_least else figure <= target
        sign = ">=" if at_least else "<="
        out.append(f"{name} {figure:.2f}{unit} {sign} {target:g}{unit}: {'met' if met else 'MISSED'}")

    if backend == "adopted":
        check("idle", r["scrape"], ADOPTED_SCRAPE_S, " s")
        check("busy", r["busy"], ADOPTED_SCRAPE_S, " s")
        check("RSS", r["rss_mib"], ADOPTED_RSS_MIB, " MiB")
        return out
    if large:
        check("busy - dump", r["busy"] - r["dump"], LARGE_BUSY_S, " s")
        check("RSS", r["rss_mib"], LARGE_RSS_MIB, " MiB")
        return out
    idle, busy, rss = TARGETS[backend]
    check("idle/dump", r["scrape"] / r["dump"], idle)
    check("busy/dump", r["busy"] / r["dump"], busy)
    check("RSS", r["rss_mib"], rss, " MiB")
    if count == 10000:
        check("sync", r["sync"], SYNC_S, " s")
    if backend != "iptables":
        check("acct/none", r["accounting"] / r["baseline"], FORWARDING, at_least=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--containers", type=int, nargs="*", default=[10000])
    parser.add_argument("--backends", nargs="+", default=["iptables", "ipset", "nftables"])
    parser.add_argument(
        "--large",
        type=int,
        nargs="*",
        default=[100000],
        help="containers, set backends only (ipset, nftables)",
    )
    parser.add_argument("--adopted", type=int, nargs="*", default=[10000], help="addresses of wiki rules")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each datapath run")
    parser.add_argument("--rounds", type=int, default=3, help="datapath runs with and without accounting")
    parser.add_argument("--scrapes", type=int, default=5, help="idle and busy scrapes, the best one kept")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    prefix = f"vzbench{os.getpid() % 1000}-"
    lab = Lab(prefix)
    rows: list[tuple[int, str, dict[str, float], bool]] = []
    with tempfile.TemporaryDirectory(prefix="vzt-bench-") as tmp:
        try:
            lab.build(default_containers(prefix, 1))
            plan = [(count, backend, False) for count in args.containers for backend in args.backends]
            plan += [
                (count, backend, True)
                for count in args.large
                for backend in args.backends
                if backend in ("ipset", "nftables")
            ]
            for count, backend, large in plan:
                times = 3 if large else args.scrapes
                row = measure(lab, count, backend, Path(tmp), args.seconds, args.rounds, times)
                rows.append((count, backend, row, large))
                print(f"  done: {count} containers, {backend}", file=sys.stderr)
            for count in args.adopted:
                rows.append((count, "adopted", measure_adopted(lab, count, Path(tmp), args.scrapes), False))
                print(f"  done: {count} addresses of wiki rules", file=sys.stderr)
        finally:
            lab.destroy()
    print(
        f"{'containers':>10} {'backend':<9} {'sync s':>7} {'change s':>8} {'idle ms':>8} {'busy ms':>8}"
        f" {'idle CPU':>8} {'busy CPU':>8}"
        f" {'dump ms':>8} {'idle/dump':>9} {'busy/dump':>9} {'RSS MiB':>8} {'kpps acct':>9}"
        f" {'kpps none':>9} {'acct/none':>9}"
    )
    for count, backend, r, _ in rows:
        sync = f"{r['sync']:>7.2f} {r['change']:>8.2f}" if "sync" in r else f"{'':>7} {'':>8}"
        forwarding = (
            f" {r['accounting'] / 1e3:>9.1f} {r['baseline'] / 1e3:>9.1f}"
            f" {r['accounting'] / r['baseline']:>9.2f}"
            if "accounting" in r
            else ""
        )
        print(
            f"{count:>10} {backend:<9} {sync} {r['scrape'] * 1e3:>8.1f}"
            f" {r['busy'] * 1e3:>8.1f} {r['scrape_cpu'] * 1e3:>8.0f} {r['busy_cpu'] * 1e3:>8.0f}"
            f" {r['dump'] * 1e3:>8.1f} {r['scrape'] / r['dump']:>9.2f}"
            f" {r['busy'] / r['dump']:>9.2f} {r['rss_mib']:>8.1f}{forwarding}"
        )
    print("\ntargets (adopted: retailnext/iptables_exporter idle 206-310 ms, busy 225-312 ms, RSS 51-53 MiB)")
    for count, backend, r, large in rows:
        print(f"{count:>10} {backend:<9} " + "; ".join(verdicts(count, backend, r, large)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
