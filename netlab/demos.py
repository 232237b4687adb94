"""What ``make demo`` and ``make demo-fleet`` share: a port of this host forwarded into a namespace, the
signals that end a demo, and the cleanup of a demo left running elsewhere."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import FrameType
from typing import Callable, Optional


def free_port(start: int) -> int:
    for port in range(start, start + 100):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise SystemExit("no free port for the demo")


class Demo:
    """A demo's life on this host: its pid file, its forwarded port, the signals that stop it."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.stopping = False
        self._socat: Optional[subprocess.Popen[bytes]] = None

    def start(self) -> None:
        def on_signal(signum: int, frame: Optional[FrameType]) -> None:
            self.stopping = True

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.state.mkdir(exist_ok=True)
        (self.state / "demo.pid").write_text(str(os.getpid()))

    def forward(self, ns: str, target: str, start: int) -> Optional[str]:
        """Forward a free loopback port of this host from start on to target (socat's TCP or TCP6 address,
        colons escaped) in namespace ns; its URL, None without socat."""
        if not shutil.which("socat"):
            return None
        port = free_port(start)
        inner = f"ip netns exec {ns} socat STDIO {target}"
        self._socat = subprocess.Popen(
            ["socat", f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork", f"EXEC:{inner}"],
            start_new_session=True,
        )
        (self.state / "socat.pid").write_text(str(self._socat.pid))
        return f"http://127.0.0.1:{port}"

    def end(self, destroy: Callable[[], None]) -> None:
        if self._socat is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._socat.pid, signal.SIGTERM)
            (self.state / "socat.pid").unlink(missing_ok=True)
        destroy()
        (self.state / "demo.pid").unlink(missing_ok=True)


def stop_running(state: Path, destroy: Callable[[], None]) -> None:
    """End a demo that runs elsewhere (it removes what it built), then remove whatever is left."""
    pidfile = state / "demo.pid"
    if pidfile.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pidfile.read_text()), signal.SIGTERM)
            time.sleep(2)
    destroy()
    socat_pid = state / "socat.pid"
    if socat_pid.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(socat_pid.read_text()), signal.SIGTERM)
        socat_pid.unlink()
