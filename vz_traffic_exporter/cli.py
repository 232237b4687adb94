"""Command line: serve (default), dump, check-config, rules sync|remove|show.

Flags may stand before or after the command name.  Exit codes: 0 success,
1 a command failed at run time, 2 invalid configuration or usage.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import gc
import io
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from types import FrameType
from typing import Optional, TextIO

from . import __version__, privileges
from .config import Config, ConfigError, load
from .exporter import Exporter
from .exposition import Part, collector, http, webconfig
from .netfilter import xtables
from .runner import CommandError, Runner, SystemRunner
from .state import NotOurs, StateFile

log = logging.getLogger("vz_traffic_exporter")

COMMANDS = {
    ("serve",): "run the HTTP exporter (default)",
    ("dump",): "read every source once and print the metrics",
    ("check-config",): "validate the configuration file",
    ("rules", "sync"): "install or update the managed accounting rules",
    ("rules", "remove"): "remove every trace of the managed rules",
    ("rules", "show"): "print the managed rules with their counters",
    ("report",): "exact traffic per container and period, from Prometheus",
}


class _LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        msg = record.getMessage().replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        text = f'ts={ts}.{int(record.msecs):03d}Z level={record.levelname.lower()} msg="{msg}"'
        if record.exc_info:
            trace = self.formatException(record.exc_info).replace("\n", "\\n").replace('"', "'")
            text += f' error="{trace}"'
        return text


def _count(text: str) -> int:
    """A whole number of 0 or more (argparse names the flag when this refuses)."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 0 or more")
    return int(text)


def _parser() -> argparse.ArgumentParser:
    usage = "\n".join(f"  vz-traffic-exporter [flags] {' '.join(c):14} {h}" for c, h in COMMANDS.items())
    p = argparse.ArgumentParser(
        prog="vz-traffic-exporter",
        description="Prometheus exporter for per-container network traffic.",
        epilog="commands:\n" + usage,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("command", nargs="*", help=argparse.SUPPRESS)
    p.add_argument(
        "--config",
        metavar="FILE",
        help="configuration file (default /etc/vz-traffic-exporter/config.yaml if it "
        "exists, else built-in defaults)",
    )
    p.add_argument(
        "--web.listen-address",
        dest="listen",
        action="append",
        metavar="ADDR",
        help="address to listen on, repeatable or comma-separated (default :10057)",
    )
    p.add_argument(
        "--web.telemetry-path",
        dest="telemetry_path",
        default="/metrics",
        metavar="PATH",
        help="path of the metrics (default /metrics)",
    )
    p.add_argument(
        "--web.config.file",
        dest="web_config",
        metavar="FILE",
        help="TLS and basic auth configuration (exporter-toolkit format)",
    )
    p.add_argument(
        "--web.max-requests",
        dest="max_requests",
        type=_count,
        default=http.DEFAULT_MAX_REQUESTS,
        metavar="N",
        help=f"scrapes served at once, more get 503; 0: no limit (default {http.DEFAULT_MAX_REQUESTS})",
    )
    p.add_argument(
        "--log.level",
        dest="log_level",
        default="info",
        choices=["debug", "info", "warn", "error"],
        help="log level (default info)",
    )
    p.add_argument(
        "--path.procfs",
        dest="procfs",
        default="/proc",
        metavar="DIR",
        help="procfs mount point (default /proc)",
    )
    p.add_argument(
        "--path.sysfs", dest="sysfs", default="/sys", metavar="DIR", help="sysfs mount point (default /sys)"
    )
    report = p.add_argument_group("report")
    for flag, dest, metavar, text in (
        ("--prometheus.url", "prometheus_url", "URL", "the query API's URL (required)"),
        ("--prometheus.user", "prometheus_user", "NAME", "basic auth user"),
        ("--prometheus.password-file", "prometheus_password_file", "FILE", "basic auth password"),
        ("--prometheus.bearer-token-file", "prometheus_bearer_token_file", "FILE", "bearer token"),
        ("--prometheus.ca-file", "prometheus_ca_file", "FILE", "CA of the server's certificate"),
        ("--prometheus.cert-file", "prometheus_cert_file", "FILE", "client certificate"),
        ("--prometheus.key-file", "prometheus_key_file", "FILE", "its key"),
        ("--month", "month", "YYYY-MM", "a billing month (default: the last complete one)"),
        ("--from", "start", "RFC3339", "the period's start (with --to)"),
        ("--to", "end", "RFC3339", "the period's end, not included"),
        ("--classes", "classes", "1,2", "classes to count (default: the quota classes)"),
        ("--selector", "selector", "MATCHERS", "label matchers of the exporters' series: '{job=\"vz\"}'"),
        ("--output", "output", "FILE", "write here instead of stdout"),
        ("--timezone", "timezone", "AREA/CITY", "the zone of the months, days and hours (default UTC)"),
        ("--cycle-day", "cycle_day", "N", "1..28: the day each month starts (default 1)"),
        ("--percentile", "percentile", "P", "1..100: add the P-th percentile of the interval rates, bit/s"),
        ("--percentile-interval", "percentile_interval", "DURATION", "the rates' interval (default 5m)"),
    ):
        report.add_argument(flag, dest=dest, metavar=metavar, help=text)
    report.add_argument(
        "--prometheus.header",
        dest="prometheus_headers",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="an extra HTTP header (a tenant header), repeatable",
    )
    report.add_argument("--step", choices=["month", "day", "hour"], help="one row per month, day or hour")
    report.add_argument("--veid", dest="veids", action="append", metavar="V", help="a container, repeatable")
    report.add_argument("--format", dest="fmt", choices=["table", "csv", "json", "html"], default="table")
    report.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when a row is incomplete (a series it counts had no known start)",
    )
    p.add_argument("--version", action="version", version=f"vz-traffic-exporter {__version__}")
    return p


def _setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel({"warn": logging.WARNING}.get(level, level.upper()))


def _load(args: argparse.Namespace) -> Optional[Config]:
    try:
        return load(args.config)
    except ConfigError as err:
        for problem in err.problems:
            print(f"{err.source}: {problem}", file=sys.stderr)
        return None


def main(argv: Optional[Sequence[str]] = None, runner: Optional[Runner] = None) -> int:
    parser = _parser()
    args = parser.parse_intermixed_args(argv)
    command = tuple(args.command) or ("serve",)
    if command not in COMMANDS:
        names = [" ".join(c) for c in COMMANDS]
        close = difflib.get_close_matches(" ".join(command), names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        parser.error(f"unknown command {' '.join(command)!r}{hint} (commands: {', '.join(names)})")
    _setup_logging(args.log_level)
    if command == ("report",):
        return _report(args)
    config = _load(args)
    if config is None:
        return 2
    web = None
    if args.web_config:
        try:
            web = webconfig.WebConfigWatcher(args.web_config)
        except webconfig.WebConfigError as err:
            print(err, file=sys.stderr)
            return 2
    runner = runner or SystemRunner()
    if command == ("check-config",):
        print(f"{config.source}: configuration is valid")
        if web is not None:
            print(f"{web.path}: web configuration is valid")
        return 0
    if command == ("dump",):
        # One read of what the sources hold now: the state file is serve's, and
        # dump neither reads nor writes it.
        exporter = Exporter(config, runner, procfs=args.procfs, sysfs=args.sysfs)
        sys.stdout.write(collector.render(exporter.poll()).decode())
        return 0
    if command[0] == "rules":
        return _rules(command[1], Exporter(config, runner, procfs=args.procfs, sysfs=args.sysfs))
    return _serve(args, config, runner, web)


def _report(args: argparse.Namespace) -> int:
    """Exit 0, 1 when the server failed or answered nonsense (one line), 2 for bad usage."""
    from datetime import datetime, timezone

    from .report import Report, Row
    from .report.formats import write
    from .report.periods import UsageError, calendar, percentile_of, period, stamp
    from .report.promapi import Client, ServerError

    try:
        if not args.prometheus_url:
            raise UsageError("report needs --prometheus.url")
        cycle = calendar(args.timezone, args.cycle_day)
        begin, finish = period(args.month, args.start, args.end, datetime.now(timezone.utc), cycle)
        percentile = percentile_of(args.percentile, args.percentile_interval)
        if percentile is not None and args.fmt == "html":
            raise UsageError(
                "--percentile: the page sums days, and a percentile is not a sum: use csv, json or table"
            )
        classes = None
        if args.classes:
            classes = {c.strip() for c in args.classes.split(",") if c.strip()}
            if not all(c.isdigit() and int(c) <= 15 for c in classes):
                raise UsageError(f"--classes: {args.classes!r} is not a list of class numbers 0..15")
        client = Client.build(
            args.prometheus_url,
            user=args.prometheus_user,
            password_file=args.prometheus_password_file,
            bearer_token_file=args.prometheus_bearer_token_file,
            ca_file=args.prometheus_ca_file,
            cert_file=args.prometheus_cert_file,
            key_file=args.prometheus_key_file,
            headers=args.prometheus_headers,
        )
        report = Report(client, args.selector, progress=sys.stderr, cycle=cycle, percentile=percentile)
        report.check_retention(begin, datetime.now(timezone.utc))
    except (UsageError, ValueError) as err:
        print(f"report: {err}", file=sys.stderr)
        return 2
    # The page draws days: it reads days (or hours), and its table sums them, exactly as the whole period.
    step = ("hour" if args.step == "hour" else "day") if args.fmt == "html" else args.step
    zone_name = args.timezone or "UTC"
    local_begin, local_finish = begin.astimezone(cycle.where), finish.astimezone(cycle.where)
    title = (
        f"Traffic per container, {local_begin:%Y-%m-%d %H:%M} to {local_finish:%Y-%m-%d %H:%M} {zone_name}"
    )
    about = [
        ("Period", f"{stamp(begin, cycle.where)} to {stamp(finish, cycle.where)} (the end not included)"),
        (
            "Classes",
            ", ".join(sorted(classes, key=int)) if classes else "each node's quota classes, else all",
        ),
        ("Server", args.prometheus_url),
        ("Selector", args.selector or "none"),
    ]
    # Nothing half written: --output is written beside its place and renamed over it once whole (rows go
    # out as they are read: memory stays one period's); stdout gets the report once it is all read.
    target = args.output
    try:
        out: TextIO = open(f"{target}.partial", "w", encoding="utf-8") if target else io.StringIO()  # noqa: SIM115
    except OSError as err:
        print(f"report: --output: {target}: {err.strerror}", file=sys.stderr)
        return 1
    wanted = set(args.veids) if args.veids else None
    incomplete = []

    def noted(rows: Iterable[Row]) -> Iterator[Row]:
        for row in rows:
            if not row.complete:
                incomplete.append(row)
            yield row

    try:
        column = percentile.column if percentile is not None else None
        write(noted(report.run(begin, finish, step, classes, wanted)), args.fmt, out, title, about, column)
    except ServerError as err:
        print(f"report: {err}", file=sys.stderr)
        if target:
            out.close()
            os.unlink(f"{target}.partial")
        return 1
    if target:
        out.close()
        os.replace(f"{target}.partial", target)
    else:
        sys.stdout.write(out.getvalue())  # type: ignore[attr-defined]
    for warning in report.warnings:
        print(f"report: warning: {warning}", file=sys.stderr)
    if incomplete and args.strict:
        print(f"report: --strict: {len(incomplete)} rows are incomplete", file=sys.stderr)
        return 1
    return 0


def _rules(action: str, exporter: Exporter) -> int:
    config = exporter.config
    _say_what_is_missing(exporter, None)
    if exporter.backend_name() is None and action != "remove":
        print(
            "netfilter accounting is off (netfilter.backend, or neither nft nor iptables works here)",
            file=sys.stderr,
        )
        return 1
    try:
        if action == "show":
            sys.stdout.write(exporter.rules().show())
        elif action == "remove":
            changes = exporter.remove_rules()
            print(f"removed the accounting rules ({changes} changes)")
        elif not config.netfilter.manage_rules:
            print("netfilter.manage_rules is false: nothing to sync", file=sys.stderr)
            return 1
        else:
            changes = exporter.sync_rules()
            print(f"accounting rules in sync ({changes} changes)")
    except (CommandError, ValueError, RuntimeError, OSError) as err:
        print(f"rules {action}: {err}", file=sys.stderr)
        return 1
    return 0


def _say_what_is_missing(exporter: Exporter, state_file: Optional[str]) -> None:
    """Log, once at start, each capability or permission this process lacks for its configuration."""
    uid = os.geteuid()
    if uid == 0:
        return
    nf = exporter.config.netfilter
    # auto: the exporter says it once itself when it cannot choose any backend for want of CAP_NET_ADMIN
    backend = None if nf.backend in ("off", "auto") else nf.backend
    legacy = False
    # No working iptables: its backend fails anyway, with its own error.
    with contextlib.suppress(CommandError, ValueError):
        if backend == "iptables":
            legacy = exporter.netfilter.xtables().variant == xtables.LEGACY
    for problem in privileges.problems(uid, privileges.own_capabilities(), backend, legacy, state_file):
        log.error("%s", problem)


def _serve(
    args: argparse.Namespace, config: Config, runner: Runner, web: Optional[webconfig.WebConfigWatcher]
) -> int:
    addresses = [a.strip() for arg in (args.listen or [":10057"]) for a in arg.split(",") if a]
    try:
        for address in addresses:
            http.parse_listen_address(address)
    except ValueError as err:
        print(f"--web.listen-address: {err}", file=sys.stderr)
        return 2
    if not args.telemetry_path.startswith("/") or args.telemetry_path == "/":
        print("--web.telemetry-path must start with / and not be /", file=sys.stderr)
        return 2

    # The addresses first: a server that cannot listen must not have touched the firewall.
    renderer = collector.Renderer()
    exporter: Optional[Exporter] = None

    def metrics() -> list[Part]:
        assert exporter is not None  # no request is served before the exporter is made
        return renderer.parts(exporter.poll())

    app = http.make_app(metrics, args.telemetry_path, web, args.max_requests)
    tls = None
    if web is not None and web.config.tls is not None:
        tls = lambda: web.current().context  # noqa: E731  (the context of the moment: renewed files apply)
    try:
        servers = http.bind(addresses, app, tls)
    except OSError as err:
        log.error("%s", err.strerror or err)
        return 1
    stop = threading.Event()  # a SIGTERM during the start (the rules sync) ends it after the start

    def on_signal(signum: int, frame: Optional[FrameType]) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        exporter = Exporter(
            config,
            runner,
            procfs=args.procfs,
            sysfs=args.sysfs,
            keep_rules=True,
            state=StateFile(config.state.file),
            save_state=True,
            background_discovery=True,
        )
    except NotOurs as err:
        print(f"{config.source}: state.file: {err}", file=sys.stderr)
        for server in servers:
            server.server_close()
        return 2
    _say_what_is_missing(exporter, config.state.file)
    if exporter.keep_rules and exporter.backend_name():
        try:
            log.info("accounting rules in sync (%d changes)", exporter.sync_rules())
        except (CommandError, ValueError, RuntimeError, OSError) as err:
            log.error("could not install the accounting rules: %s", err)
    # What the start made (the configuration, the inventory, the class tables, the accounting's keys) lives
    # as long as the process: the cyclic collector need not walk it again at every scrape.
    gc.collect()
    gc.freeze()
    http.start(servers, addresses)

    # Background reads catch resets and save the state even when nobody scrapes.
    while not stop.wait(config.state.poll_interval):
        exporter.poll(persist=True)
    for server in servers:
        server.shutdown()
        server.server_close()
    exporter.poll(persist=True)  # one final read, saved
    log.info("final read done, exiting")
    return 0
