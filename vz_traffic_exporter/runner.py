"""The one door to the outside world: every external command and netlink socket goes through here.

A :class:`Runner` runs argv lists with a timeout and ``LC_ALL=C`` and returns
the captured output; a failure raises :class:`CommandError` carrying argv,
exit code and stderr.  It also opens the NETLINK_NETFILTER sockets that the
netlink readers speak over (:meth:`Runner.netlink`; None: read with the
tools' text instead).  Sources and rule backends take a runner as a
parameter, so tests can inject one that replays captured output, or a
scripted kernel socket.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol

DEFAULT_TIMEOUT = 10.0
NETLINK_NETFILTER = 12  # linux/netlink.h
NETLINK_TIMEOUT = 10.0  # s without a netlink message: then it is an error (the tools' text is read instead)
Netlink = Callable[[], Any]  # opens a NETLINK_NETFILTER socket, bound, with a timeout


class CommandError(Exception):
    """A command could not be run or exited non-zero."""

    def __init__(self, argv: Sequence[str], returncode: Optional[int], stderr: str) -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr = stderr.strip()
        if returncode is None:
            why = self.stderr or "could not be run"
        else:
            why = f"exited {returncode}" + (f": {self.stderr}" if self.stderr else "")
        super().__init__(f"command `{' '.join(self.argv)}` {why}")


def output_of(runner: Runner, argv: Sequence[str]) -> Optional[str]:
    """What a command prints, or None when its program is missing or it fails.

    For asking whether a host has something (``auto``), where failing is an answer.
    """
    if runner.which(argv[0]) is None:
        return None
    try:
        return runner.run(argv)
    except CommandError:
        return None


class CommandNotFound(CommandError):
    """The program is not installed (not on PATH)."""

    def __init__(self, argv: Sequence[str]) -> None:
        super().__init__(argv, None, f"{argv[0]}: not found on PATH")


class Runner(Protocol):
    def run(
        self, argv: Sequence[str], *, stdin: Optional[str] = None, timeout: Optional[float] = None
    ) -> str:
        """Run argv and return its stdout; raise CommandError on failure (timeout: else the runner's)."""
        ...

    def which(self, program: str) -> Optional[str]:
        """Return the path of program if it is installed."""
        ...

    def netlink(self) -> Optional[Netlink]:
        """What opens netfilter netlink sockets, or None: read with the tools' text only."""
        ...


@dataclass
class SystemRunner:
    """Runs real commands, and opens real netlink sockets (unless use_netlink is False)."""

    timeout: float = DEFAULT_TIMEOUT
    use_netlink: bool = True

    def run(
        self, argv: Sequence[str], *, stdin: Optional[str] = None, timeout: Optional[float] = None
    ) -> str:
        env = dict(os.environ, LC_ALL="C", LANG="C")
        timeout = self.timeout if timeout is None else timeout
        try:
            proc = subprocess.run(
                list(argv),
                input=stdin,
                capture_output=True,
                encoding="utf-8",
                errors="replace",  # a tool's bytes that are not UTF-8 become U+FFFD: decoding never fails
                timeout=timeout,
                env=env,
                check=False,
            )
        except FileNotFoundError:
            raise CommandNotFound(argv) from None
        except subprocess.TimeoutExpired:
            raise CommandError(argv, None, f"timed out after {timeout:g}s") from None
        except OSError as err:
            raise CommandError(argv, None, str(err)) from None
        if proc.returncode != 0:
            raise CommandError(argv, proc.returncode, proc.stderr)
        return proc.stdout

    def which(self, program: str) -> Optional[str]:
        return shutil.which(program)

    def netlink(self) -> Optional[Netlink]:
        return _open_netlink if self.use_netlink else None


def _open_netlink() -> Any:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    try:
        sock.settimeout(NETLINK_TIMEOUT)
        sock.bind((0, 0))
    except OSError:
        sock.close()
        raise
    return sock
