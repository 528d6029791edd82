"""Parse ``/proc/PID/maps`` text into :class:`~fastfault.trace.format.Mapping` tables.

Each line is ``start-end perms offset dev inode [path]``, e.g.::

    7f2c4e400000-7f2c4e426000 r--p 00000000 fe:00 339380    /usr/lib/x86_64-linux-gnu/libc.so.6
    55d0c1a2b000-55d0c1a4c000 rw-p 00000000 00:00 0         [heap]

Blank lines are skipped, and so are the ``Key:   value`` attribute lines of
``/proc/PID/smaps``, so an smaps file can be given as well.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from fastfault.errors import InputError
from fastfault.trace.format import Mapping

_LINE_RE = re.compile(
    r"^(?P<start>[0-9a-fA-F]+)-(?P<end>[0-9a-fA-F]+)\s+(?P<perms>\S+)\s+(?P<offset>[0-9a-fA-F]+)\s+"
    r"(?P<dev>[0-9a-fA-F]+:[0-9a-fA-F]+)\s+(?P<inode>\d+)(?:\s+(?P<path>.*?))?\s*$"
)
_SMAPS_ATTR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*:(\s|$)")


def file_size_of(path: str) -> int:
    """Size in bytes of the regular file at ``path``, or -1 if it is missing or not a regular file.

    Parameters
    ----------
    path : str
        A mapping path (``" (deleted)"`` suffixes and bracketed names give -1).

    Returns
    -------
    int
        ``st_size`` or -1.
    """
    if not path or path.startswith("[") or path.endswith(" (deleted)"):
        return -1
    try:
        st = os.stat(path)
    except OSError:
        return -1
    return st.st_size if stat.S_ISREG(st.st_mode) else -1


def parse_maps_text(text: str, *, source: str = "<maps>", stat_files: bool = False) -> tuple[Mapping, ...]:
    """Parse maps text.

    Parameters
    ----------
    text : str
        Content of a ``/proc/PID/maps`` (or ``smaps``) file.
    source : str, optional
        Name used in error messages.
    stat_files : bool, optional
        Fill ``file_size`` with ``os.stat`` for file mappings whose path exists (else -1).

    Returns
    -------
    tuple of Mapping
        In file order (``/proc`` lists them sorted by address).

    Raises
    ------
    fastfault.errors.InputError
        ``"<source>:<line>: <reason>: '<text>'"`` for a malformed line, overlapping mappings,
        or a file with no mapping at all.
    """
    out: list[Mapping] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or _SMAPS_ATTR_RE.match(line):
            continue
        m = _LINE_RE.match(line)
        shown = line if len(line) <= 100 else line[:97] + "..."
        if m is None:
            raise InputError(
                f"{source}:{lineno}: not a maps line (expected 'start-end perms offset dev inode path'): {shown!r}"
            )
        path = m["path"] or ""
        try:
            mapping = Mapping(
                start=int(m["start"], 16),
                end=int(m["end"], 16),
                offset=int(m["offset"], 16) if path and not path.startswith("[") else 0,
                perms=m["perms"],
                path=path,
                file_size=file_size_of(path) if stat_files else -1,
            )
        except InputError as err:
            raise InputError(f"{source}:{lineno}: {err}: {shown!r}") from None
        if out and mapping.start < out[-1].end:
            raise InputError(f"{source}:{lineno}: mapping overlaps or precedes the previous one ({out[-1]}): {shown!r}")
        out.append(mapping)
    if not out:
        raise InputError(f"{source}:1: no mappings in maps file")
    return tuple(out)


def parse_maps(path: str | os.PathLike[str], *, stat_files: bool = False) -> tuple[Mapping, ...]:
    """Parse a maps file.

    Parameters
    ----------
    path : path-like
        A saved copy of ``/proc/PID/maps`` (or ``/proc/PID/maps`` itself).
    stat_files : bool, optional
        Fill ``file_size`` from ``os.stat`` of each mapped path that exists.

    Returns
    -------
    tuple of Mapping
        The mappings in file order.

    Raises
    ------
    fastfault.errors.InputError
        Missing or malformed file (message names the file and line).
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{p}: no such maps file") from None
    except OSError as err:
        raise InputError(f"{p}: cannot read maps file ({err.strerror})") from None
    return parse_maps_text(data.decode("utf-8", "surrogateescape"), source=str(p), stat_files=stat_files)


def format_maps(mappings: tuple[Mapping, ...] | list[Mapping]) -> str:
    """Render mappings as ``/proc/PID/maps`` lines (device and inode written as 0).

    Parameters
    ----------
    mappings : sequence of Mapping
        The mappings.

    Returns
    -------
    str
        One line per mapping, newline terminated; :func:`parse_maps_text` reads it back.
    """
    return "".join(
        f"{m.start:08x}-{m.end:08x} {m.perms} {m.offset:08x} 00:00 0" + (f" {m.path}" if m.path else "") + "\n"
        for m in mappings
    )
