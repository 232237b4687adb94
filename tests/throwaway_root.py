"""A throwaway root: the host's own Debian, seen through an overlay whose writes are the test's.

Each command runs in a private mount namespace that mounts an overlay of
``/`` (read only below) with an upper directory of the test's, and chroots
into it.  Whatever a command changes there (the dpkg database, /etc, /var,
users, unit files) lands in that directory and nowhere else; deleting the
directory deletes all of it.  Nothing is mounted in the host's mount
namespace.  Given a network namespace, commands run in it too, so that a
package's scripts that touch netfilter touch only that namespace.

systemctl sees a chroot and changes nothing: no unit is enabled, started or
stopped on the host.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path
from typing import Optional

_MOUNT = (
    "set -e; "
    "mount -t overlay overlay -o lowerdir=/,upperdir={upper},workdir={work} {root}; "
    "for fs in proc dev sys; do mount --rbind /$fs {root}/$fs; done; "
    'exec chroot {root} "$@"'
)


class ThrowawayRoot:
    def __init__(self, base: Path, netns: Optional[str] = None) -> None:
        self.base = base
        self.netns = netns
        self.upper, self.work, self.root = (base / name for name in ("upper", "work", "root"))
        for path in (self.upper, self.work, self.root):
            path.mkdir(parents=True, exist_ok=True)

    def run(self, *argv: str, check: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
        script = _MOUNT.format(
            upper=shlex.quote(str(self.upper)),
            work=shlex.quote(str(self.work)),
            root=shlex.quote(str(self.root)),
        )
        command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"]
        command += ["env", *(f"{k}={v}" for k, v in env.items()), *argv]
        if self.netns:
            command = ["ip", "netns", "exec", self.netns, *command]
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{argv} in the throwaway root exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def put(self, source: Path, path: str) -> None:
        """Place a file of the host's at path inside the root."""
        target = self.upper / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())

    def exists(self, path: str) -> bool:
        return self.run("test", "-e", path, check=False).returncode == 0

    def read(self, path: str) -> str:
        return self.run("cat", path).stdout
