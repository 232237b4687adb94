"""Reading files that anyone may have put in our way: only regular files, only so much of them.

A FIFO, a device or a directory named as a configuration, classes, state or
kernel file would make a plain ``open().read()`` hang, read forever, or fail
in a way that names nothing.  :func:`read_text` opens without blocking,
refuses anything that is not a regular file (procfs and sysfs files are
regular files), and reads at most ``limit`` bytes.  Every failure is an
:class:`OSError` whose message names the file.
"""

from __future__ import annotations

import errno
import os
import stat

MiB = 1 << 20


class FileError(OSError):
    """A file that cannot be read as a regular file of bounded size (the message names it)."""

    def __str__(self) -> str:
        return str(self.strerror)


def read_bytes(path: str, limit: int, *, follow: bool = True) -> bytes:
    """The bytes of a regular file of at most limit bytes.

    follow=False refuses a symbolic link (the state file: never written through one).
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        if err.errno == errno.ELOOP and not follow:
            raise FileError(err.errno, f"{path}: is a symbolic link, not a file of ours") from None
        raise FileError(err.errno, f"{path}: {err.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileError(errno.EINVAL, f"{path}: is {describe(info.st_mode)}, not a regular file")
        if info.st_size > limit:  # procfs and sysfs files say 0: the read below is bounded too
            raise FileError(errno.EFBIG, f"{path}: larger than {limit} bytes ({info.st_size})")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(limit + 1 - size, MiB))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise FileError(errno.EFBIG, f"{path}: larger than {limit} bytes")
        return b"".join(chunks)
    except FileError:
        raise
    except OSError as err:
        raise FileError(err.errno, f"{path}: {err.strerror}") from None
    finally:
        os.close(fd)


def read_text(path: str, limit: int, *, follow: bool = True, encoding: str = "utf-8") -> str:
    """The text of a regular file of at most limit bytes (UnicodeDecodeError where it is not text)."""
    return read_bytes(path, limit, follow=follow).decode(encoding)


def describe(mode: int) -> str:
    for test, what in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISLNK, "a symbolic link"),
    ):
        if test(mode):
            return what
    return "not a regular file"
