"""A file a setting names (a CSV, a study file): read only when it is a regular local file, and bounded.

A path can come from someone else (an export's config.json, a store's logged config): a URL would be
fetched by pandas, a FIFO blocks the reader for ever, a device such as /dev/zero never ends. So the
name is refused when it is a URL, the file is checked with ``stat`` before it is opened and with
``fstat`` after (opened non-blocking: a FIFO swapped in between cannot hang), and at most ``limit``
bytes are read.
"""

from __future__ import annotations

import os
import re
import stat

from .errors import ConfigError

URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
"""``scheme://``: what pandas, urllib or fsspec would fetch instead of opening."""

MB = 1 << 20


class RefusedFile(ConfigError):
    """A named file that is not read (a URL, missing, not a regular file, too large): its message quotes
    nothing of the file's content."""


def memory_bound(share: int, most: int) -> int:
    """``most`` bytes, or 1/``share`` of this machine's memory when that is less."""
    try:
        physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        physical = 8 << 30
    return min(most, physical // share)


CSV_LIMIT = memory_bound(8, 2 << 30)
"""The largest CSV read: 2 GiB, or an eighth of memory when that is less (pandas needs a few times
the text's size while it parses)."""


def read_local_file(path: str, what: str, limit: int, kind: str = "file") -> bytes:
    """The bytes of the regular file ``path`` (``what``: how the message names it, e.g. ``csv = 'x.csv'``;
    ``kind``: what it should be, e.g. "CSV file"), or one line saying why it is not read: a URL, missing,
    a directory, not a regular file, too large."""
    if URL.match(path):
        raise RefusedFile(f"{what}: is a URL; only a local file is read (download it first, then name the file)")
    try:
        before = os.stat(path)  # follows a symlink: what it points to is what is read
    except FileNotFoundError:
        raise RefusedFile(f"{what}: file not found") from None
    except PermissionError:
        raise RefusedFile(f"{what}: cannot be read (permission denied)") from None
    except (OSError, ValueError) as exc:
        raise RefusedFile(f"{what}: cannot be read ({_reason(exc)})") from None
    _check_kind(before, what, limit, kind)
    try:
        handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except PermissionError:
        raise RefusedFile(f"{what}: cannot be read (permission denied)") from None
    except OSError as exc:
        raise RefusedFile(f"{what}: cannot be read ({_reason(exc)})") from None
    try:
        _check_kind(os.fstat(handle), what, limit, kind)  # the file opened is the file checked
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(handle, min(16 * MB, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise RefusedFile(f"{what}: cannot be read ({_reason(exc)})") from None
    finally:
        os.close(handle)
    if size > limit:  # it grew while it was read
        raise RefusedFile(f"{what}: holds more than {_size(limit)}; at most {_size(limit)} are read")
    return b"".join(chunks)


def _check_kind(status: os.stat_result, what: str, limit: int, kind: str) -> None:
    if stat.S_ISDIR(status.st_mode):
        raise RefusedFile(f"{what}: is a directory, not a {kind}")
    if not stat.S_ISREG(status.st_mode):
        raise RefusedFile(f"{what}: is not a regular file (a FIFO, device or socket); name a {kind} on disk")
    if status.st_size > limit:
        raise RefusedFile(f"{what}: is {_size(status.st_size)}; at most {_size(limit)} are read")


def _size(count: int) -> str:
    return f"{count / MB:,.1f} MB" if count >= MB else f"{count:,} bytes"


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc).splitlines()[0][:200] or type(exc).__name__
