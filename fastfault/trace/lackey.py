"""Fast reader for valgrind lackey ``--trace-mem=yes`` logs.

Lackey writes one event per line to valgrind's log channel::

    I  04001290,3        instruction fetch ("I" + two spaces)
     L 1ffefffd08,8      data load
     S 1ffefffd00,8      data store
     M 0421ad38,4        modify (load + store of the same bytes)

(hex address without ``0x``, decimal size), plus valgrind's own ``==PID==`` (and ``--PID--``,
``**PID**``) lines, which are skipped, as are blank lines.

Conversion to page accesses (see :mod:`fastfault.trace.format`):

* an access touches every 4 KiB page from ``addr >> 12`` to ``(addr + size - 1) >> 12``;
  a page-crossing access (``addr % 4096 + size > 4096``) therefore yields two rows;
* ``I`` becomes :attr:`~fastfault.codes.AccessKind.IFETCH`, ``L`` ``LOAD``, ``S`` ``STORE``;
* ``M`` becomes a ``LOAD`` of its page(s) followed by a ``STORE`` of the same page(s): we model a
  read-modify-write instruction on an unmapped page as a read fault followed by a write
  (write-protect/COW) fault, and the simulator sees both. (An x86 CPU may report such an
  instruction as a single write fault; a consumer that wants that can merge a LOAD row
  immediately followed by a STORE row of the same page.)
* consecutive identical ``(vpn, kind)`` accesses are collapsed on the fly into one row whose
  ``count`` is the run length (lossless, see :func:`~fastfault.trace.format.collapse_runs`).

What lackey records (caveats): user-space accesses only, in valgrind's address layout; ``rep``
string instructions as one access per iteration; and valgrind's IR optimiser may drop a load
whose value is never used (observed: four ``volatile`` loads into a dead register traced as one).

The log is read in large binary chunks and scanned by one jitted byte parser
(:func:`_scan`) that fills preallocated output arrays; Python only handles chunk boundaries,
growing the outputs and turning error codes into :class:`~fastfault.errors.InputError`
messages that carry the 1-based line number and the offending text.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import os
import platform
import time
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from fastfault._jit import jit
from fastfault.codes import AccessKind
from fastfault.errors import InputError
from fastfault.trace.format import PAGE_SHIFT, Trace, _mapping_index, make_trace, save_trace

#: Default read size of :func:`read_lackey` (bytes).
CHUNK_BYTES = 64 << 20

#: Largest access size accepted (bytes); lackey never reports more than a few hundred.
MAX_ACCESS_SIZE = 1 << 20

_UINT32_MAX = 0xFFFFFFFF

# Scanner status codes (>= 0: stopped normally, < 0: error at the returned line start).
_OK = 0  # every complete line consumed; the returned position starts an unterminated tail
_FULL = 1  # output arrays full; the returned position starts the line not yet consumed
_LIMIT = 2  # max_accesses reached
_E_KIND = -1
_E_ADDR = -2
_E_TRUNC = -3
_E_SIZE = -4
_E_LINE = -5
_E_RANGE = -6

_REASONS = {
    _E_KIND: "unknown access kind (expected 'I  ', ' L ', ' S ' or ' M ')",
    _E_ADDR: "malformed hex address",
    _E_TRUNC: "truncated line (no ',size' after the address)",
    _E_SIZE: "malformed access size (expected ',<decimal>' ending the line)",
    _E_LINE: "not a lackey trace line",
    _E_RANGE: f"address >= 2**63 or access size above {MAX_ACCESS_SIZE}",
}

#: Value of each byte as a hexadecimal digit, -1 for non-digits (the scanner's lookup table).
_HEXVAL = np.full(256, -1, dtype=np.int8)
_HEXVAL[np.frombuffer(b"0123456789", np.uint8)] = np.arange(10)
_HEXVAL[np.frombuffer(b"abcdef", np.uint8)] = np.arange(10, 16)
_HEXVAL[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16)

# state[] slots carried across chunks
_S_LAST_VPN, _S_LAST_KIND, _S_TOTAL, _S_LINES, _S_ACCESS_LINES = range(5)


@jit
def _scan(buf, pos, end, final, max_accesses, out_vpn, out_kind, out_count, nout, state, out_line, track, hexval):
    """Parse complete lackey lines of ``buf[pos:end]`` into page-access rows.

    Parameters
    ----------
    buf : numpy.ndarray of uint8, shape (m,)
        Raw log bytes.
    pos, end : int
        Byte range to scan.
    final : bool
        True if ``end`` is the end of the log (an unterminated last line is then parsed).
    max_accesses : int
        Stop once this many accesses have been emitted in total.
    out_vpn : numpy.ndarray of int64, shape (cap,)
        Output page numbers; rows ``[0, nout)`` are already filled.
    out_kind : numpy.ndarray of uint8, shape (cap,)
        Output access kinds.
    out_count : numpy.ndarray of uint32, shape (cap,)
        Output run lengths.
    nout : int
        Number of rows already filled.
    state : numpy.ndarray of int64, shape (5,)
        Carried state: last vpn, last kind, accesses emitted, lines consumed, access lines.
    out_line : numpy.ndarray of int64, shape (cap,)
        1-based log line of each row's first access (written only if ``track``).
    track : bool
        Fill ``out_line``.
    hexval : numpy.ndarray of int8, shape (256,)
        Value of each byte as a hex digit, -1 if it is not one (:data:`_HEXVAL`).

    Returns
    -------
    status : int
        ``_OK``, ``_FULL``, ``_LIMIT`` or a negative error code.
    pos : int
        Start of the first line not consumed (the offending line on error).
    nout : int
        Rows filled.
    """
    cap = out_vpn.shape[0]
    last_vpn = state[0]
    last_kind = state[1]
    total = state[2]
    lines = state[3]
    acc_lines = state[4]
    status = 0
    while pos < end:
        i = pos
        c = np.int64(buf[i])
        k = -1  # 0 load, 1 store, 2 ifetch, 3 modify
        if c == 73:  # 'I'
            k = 2
            i += 1
        elif c == 32:  # ' '
            i += 1
            if i >= end:
                if final:
                    status = _E_KIND
                break
            c = np.int64(buf[i])
            if c == 76:  # 'L'
                k = 0
            elif c == 83:  # 'S'
                k = 1
            elif c == 77:  # 'M'
                k = 3
            else:
                status = _E_KIND
                break
            i += 1
        elif c == 61 or c == 45 or c == 42 or c == 10 or c == 13:  # '=', '-', '*', blank line
            while i < end and buf[i] != 10:
                i += 1
            if i >= end:
                if final:
                    lines += 1
                    pos = end
                break
            if c == 13 and i != pos + 1:
                status = _E_LINE
                break
            lines += 1
            pos = i + 1
            continue
        else:
            status = _E_LINE
            break
        # at least one space between the kind and the address
        if i >= end:
            if final:
                status = _E_TRUNC
            break
        if buf[i] != 32:
            status = _E_TRUNC if (buf[i] == 10 or buf[i] == 13) else _E_KIND
            break
        while i < end and buf[i] == 32:
            i += 1
        addr = np.int64(0)
        nd = 0
        overflow = False
        while i < end:
            d = np.int64(hexval[buf[i]])
            if d < 0:
                break
            if addr >= np.int64(1) << 59:
                overflow = True
            addr = (addr << 4) | d
            nd += 1
            i += 1
        if i >= end and not final:
            break
        if overflow:
            status = _E_RANGE
            break
        if i >= end or buf[i] != 44:  # ','
            if nd == 0:
                status = _E_ADDR if (i < end and buf[i] != 10 and buf[i] != 13) else _E_TRUNC
            elif i >= end or buf[i] == 10 or buf[i] == 13:
                status = _E_TRUNC
            else:
                status = _E_ADDR
            break
        if nd == 0:
            status = _E_ADDR
            break
        i += 1
        size = np.int64(0)
        nd = 0
        while i < end:
            c = np.int64(buf[i])
            if c < 48 or c > 57:
                break
            if nd < 10:
                size = size * 10 + (c - 48)
            nd += 1
            i += 1
        if i >= end and not final:
            break
        if nd == 0:
            status = _E_SIZE
            break
        if i < end and buf[i] == 13:
            i += 1
        if i < end and buf[i] != 10:
            status = _E_SIZE
            break
        if size > 1 << 20:  # MAX_ACCESS_SIZE
            status = _E_RANGE
            break
        # the line is well formed: emit its page accesses
        first = addr >> 12
        lastp = (addr + (size if size > 0 else 1) - 1) >> 12
        npg = lastp - first + 1
        need = 2 * npg if k == 3 else npg
        if nout + need > cap:
            status = _FULL
            break
        acc_lines += 1
        if need == 1 and total < max_accesses:  # the common case: one page, one kind
            if first == last_vpn and k == last_kind and nout > 0 and out_count[nout - 1] < 0xFFFFFFFF:
                out_count[nout - 1] += 1
            else:
                out_vpn[nout] = first
                out_kind[nout] = k
                out_count[nout] = 1
                if track:
                    out_line[nout] = lines + 1
                nout += 1
                last_vpn = first
                last_kind = k
            total += 1
            lines += 1
            pos = i + 1 if i < end else end
            if total >= max_accesses:
                status = _LIMIT
                break
            continue
        limited = False
        for r in range(2 if k == 3 else 1):
            kk = k
            if k == 3:
                kk = r  # LOAD then STORE
            for p in range(first, lastp + 1):
                if total >= max_accesses:
                    limited = True
                    break
                if p == last_vpn and kk == last_kind and nout > 0 and out_count[nout - 1] < 0xFFFFFFFF:
                    out_count[nout - 1] += 1
                else:
                    out_vpn[nout] = p
                    out_kind[nout] = kk
                    out_count[nout] = 1
                    if track:
                        out_line[nout] = lines + 1
                    nout += 1
                    last_vpn = p
                    last_kind = kk
                total += 1
            if limited:
                break
        lines += 1
        pos = i + 1 if i < end else end
        if limited or total >= max_accesses:
            status = _LIMIT
            break
    state[0] = last_vpn
    state[1] = last_kind
    state[2] = total
    state[3] = lines
    state[4] = acc_lines
    return status, pos, nout


class LackeyParser:
    """Incremental lackey parser: feed raw byte chunks, get collapsed page-access arrays.

    Parameters
    ----------
    source : str
        Name of the log used in error messages (a path or ``"<fifo>"``).
    max_accesses : int, optional
        Stop after this many accesses (expanded count); ``None`` for no limit.
    capacity : int, optional
        Rows per output block (the arrays grow block by block).
    track_lines : bool, optional
        Also record the 1-based log line of each row's first access (``lines`` in :meth:`result`).
    """

    def __init__(
        self,
        source: str,
        *,
        max_accesses: int | None = None,
        capacity: int = 1 << 20,
        track_lines: bool = False,
    ) -> None:
        if max_accesses is not None and max_accesses < 1:
            raise InputError(f"max_accesses must be >= 1, got {max_accesses}")
        self.source = source
        self.max_accesses = np.int64(max_accesses if max_accesses is not None else np.iinfo(np.int64).max)
        self.track_lines = bool(track_lines)
        cap = max(int(capacity), 64)
        self._vpn = np.empty(cap, dtype=np.int64)
        self._kind = np.empty(cap, dtype=np.uint8)
        self._count = np.empty(cap, dtype=np.uint32)
        self._line = np.empty(cap if track_lines else 1, dtype=np.int64)
        self._nout = 0
        self._blocks: list[tuple[np.ndarray, ...]] = []
        self._state = np.array([-1, -1, 0, 0, 0], dtype=np.int64)
        self.bytes_seen = 0
        self.limit_reached = False

    @property
    def lines(self) -> int:
        """Lines consumed so far."""
        return int(self._state[_S_LINES])

    @property
    def access_lines(self) -> int:
        """Access (I/L/S/M) lines consumed so far."""
        return int(self._state[_S_ACCESS_LINES])

    @property
    def accesses(self) -> int:
        """Page accesses emitted so far (expanded count)."""
        return int(self._state[_S_TOTAL])

    def feed(self, buf: np.ndarray, n: int, *, final: bool = False) -> int:
        """Parse the complete lines of ``buf[:n]``.

        Parameters
        ----------
        buf : numpy.ndarray of uint8, shape (m,)
            Bytes of the log continuing exactly where the previous call stopped.
        n : int
            Number of valid bytes in ``buf``.
        final : bool, optional
            ``buf[:n]`` ends the log (an unterminated last line is parsed too).

        Returns
        -------
        int
            Bytes consumed; ``buf[consumed:n]`` is an incomplete line to pass again with more data
            (always ``n`` when ``final`` or when the access limit was reached).

        Raises
        ------
        fastfault.errors.InputError
            On a malformed line: ``"<source>:<line>: <reason>: '<text>'"``.
        """
        if self.limit_reached:
            return n
        pos = 0
        while True:
            status, pos, nout = _scan(
                buf,
                pos,
                n,
                final,
                self.max_accesses,
                self._vpn,
                self._kind,
                self._count,
                self._nout,
                self._state,
                self._line,
                self.track_lines,
                _HEXVAL,
            )
            self._nout = int(nout)
            pos = int(pos)
            if status == _FULL:
                if self._nout <= 1:  # a single line needs more rows than a block holds
                    self._grow(4 * self._vpn.shape[0])
                else:
                    self._flush()
                continue
            if status == _LIMIT:
                self.limit_reached = True
                self.bytes_seen += n
                return n
            if status < 0:
                self._raise(int(status), buf, pos, n)
            self.bytes_seen += pos
            return pos

    def _flush(self) -> None:
        """Move all rows but the last (which a run may still extend) to the block list."""
        k = self._nout - 1
        arrays = (self._vpn, self._kind, self._count) + ((self._line,) if self.track_lines else ())
        self._blocks.append(tuple(a[:k].copy() for a in arrays))
        for a in arrays:
            a[0] = a[k]
        self._nout = 1

    def _grow(self, cap: int) -> None:
        for name in ("_vpn", "_kind", "_count") + (("_line",) if self.track_lines else ()):
            old = getattr(self, name)
            new = np.empty(cap, dtype=old.dtype)
            new[: self._nout] = old[: self._nout]
            setattr(self, name, new)

    def _raise(self, status: int, buf: np.ndarray, pos: int, n: int) -> None:
        stop = pos
        while stop < n and stop - pos < 200 and buf[stop] != 10:
            stop += 1
        text = bytes(buf[pos:stop]).decode("utf-8", "replace").rstrip("\r")
        if len(text) > 80:
            text = text[:77] + "..."
        lineno = self.lines + 1
        raise InputError(f"{self.source}:{lineno}: {_REASONS[status]}: {text!r}")

    def check_nonempty(self) -> None:
        """Raise if the log had no bytes or no access line.

        Raises
        ------
        fastfault.errors.InputError
            For an empty log or a log without any ``I``/``L``/``S``/``M`` line.
        """
        if self.bytes_seen == 0 and self.lines == 0:
            raise InputError(f"{self.source}:1: empty lackey log")
        if self.accesses == 0:
            raise InputError(
                f"{self.source}:{self.lines}: no access lines (I/L/S/M) in the log; "
                "was valgrind run with --tool=lackey --trace-mem=yes?"
            )

    def result(self) -> dict[str, np.ndarray]:
        """Concatenate the parsed rows.

        Returns
        -------
        dict
            ``vpn`` (int64), ``kind`` (uint8), ``count`` (uint32), each shape (n,), and, if
            ``track_lines``, ``line`` (int64, shape (n,)).
        """
        names = ("vpn", "kind", "count") + (("line",) if self.track_lines else ())
        arrays = (self._vpn, self._kind, self._count) + ((self._line,) if self.track_lines else ())
        out = {}
        for j, name in enumerate(names):
            parts = [b[j] for b in self._blocks] + [arrays[j][: self._nout]]
            out[name] = np.concatenate(parts) if len(parts) > 1 else parts[0].copy()
        return out


def parse_stream(
    stream: BinaryIO,
    parser: LackeyParser,
    *,
    chunk_bytes: int = CHUNK_BYTES,
    min_read: int = 0,
    idle_sleep: float = 0.0,
) -> LackeyParser:
    """Feed a whole binary stream (a file or a FIFO) to ``parser`` in large chunks.

    Parameters
    ----------
    stream : binary file object
        Supports ``readinto`` (``open(path, "rb", buffering=0)``).
    parser : LackeyParser
        The parser to feed.
    chunk_bytes : int, optional
        Size of the read buffer; a line longer than this is an error.
    min_read : int, optional
        For pipes: after a read shorter than this, sleep ``idle_sleep`` seconds so that the
        writer fills the pipe instead of waking the reader for every line (valgrind issues one
        ``write`` per line).
    idle_sleep : float, optional
        See ``min_read``.

    Returns
    -------
    LackeyParser
        ``parser``, after the final chunk (or after its access limit was reached).
    """
    buf = np.empty(max(int(chunk_bytes), 4096), dtype=np.uint8)
    view = memoryview(buf)
    tail = 0
    while True:
        got = stream.readinto(view[tail:])
        if got is None:  # non-blocking stream without data
            continue
        n = tail + got
        if got == 0:
            parser.feed(buf, n, final=True)
            return parser
        used = parser.feed(buf, n)
        if parser.limit_reached:
            return parser
        tail = n - used
        if tail == buf.shape[0]:
            raise InputError(f"{parser.source}:{parser.lines + 1}: line longer than {buf.shape[0]} bytes")
        if tail:
            buf[:tail] = buf[used:n]
        if got < min_read:
            time.sleep(idle_sleep)


def _open_log(path: str | os.PathLike[str]) -> BinaryIO:
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such lackey log")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, not a lackey log")
    return open(p, "rb", buffering=0)


def parse_lackey(
    log_path: str | os.PathLike[str],
    *,
    max_accesses: int | None = None,
    chunk_bytes: int = CHUNK_BYTES,
    track_lines: bool = False,
) -> LackeyParser:
    """Parse a lackey log file into page-access rows (no mapping attribution).

    Parameters
    ----------
    log_path : path-like
        The log written by ``valgrind --tool=lackey --trace-mem=yes --log-file=...``.
    max_accesses : int, optional
        Stop after this many (expanded) page accesses.
    chunk_bytes : int, optional
        Read size.
    track_lines : bool, optional
        Record each row's log line (slower; used to locate errors).

    Returns
    -------
    LackeyParser
        Call :meth:`LackeyParser.result` for the arrays; ``lines``/``accesses`` hold totals.

    Raises
    ------
    fastfault.errors.InputError
        Missing, empty or malformed log (message names file and line).
    """
    parser = LackeyParser(str(log_path), max_accesses=max_accesses, track_lines=track_lines)
    with _open_log(log_path) as fh:
        parse_stream(fh, parser, chunk_bytes=chunk_bytes)
    parser.check_nonempty()
    return parser


def read_lackey(log_path: str | os.PathLike[str], *, max_accesses: int | None = None) -> Trace:
    """Read a lackey log as a collapsed :class:`~fastfault.trace.format.Trace` without mappings.

    Parameters
    ----------
    log_path : path-like
        The lackey log.
    max_accesses : int, optional
        Stop after this many (expanded) page accesses.

    Returns
    -------
    Trace
        Rows collapsed on equal consecutive ``(vpn, kind)``; ``mappings`` is empty.
    """
    parser = parse_lackey(log_path, max_accesses=max_accesses)
    arrays = parser.result()
    meta = _base_meta(parser) | {"source_log": str(log_path)}
    return make_trace(arrays["vpn"], arrays["kind"], arrays["count"], (), meta)


def _base_meta(parser: LackeyParser) -> dict[str, Any]:
    return {
        "tool": "valgrind lackey --trace-mem=yes",
        "log_lines": parser.lines,
        "access_lines": parser.access_lines,
        "accesses": parser.accesses,
        "truncated_at_max_accesses": parser.limit_reached,
        "page_shift": PAGE_SHIFT,
        "kinds": {k.name: int(k) for k in AccessKind},
    }


def _line_text(path: str | os.PathLike[str], lineno: int) -> str:
    with open(path, "rb") as fh:
        line = next(itertools.islice(fh, lineno - 1, None), b"")
    return line.decode("utf-8", "replace").rstrip("\r\n")


def import_lackey(
    log_path: str | os.PathLike[str],
    maps_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str] | None = None,
    *,
    allow_unmapped: bool = False,
    max_accesses: int | None = None,
) -> Trace:
    """Convert a lackey log plus a ``/proc/PID/maps`` snapshot into a trace with mappings.

    Parameters
    ----------
    log_path : path-like
        The lackey log.
    maps_path : path-like
        A maps file (``start-end perms offset dev inode path`` lines) describing the address
        space the log refers to (for a valgrind run: the *valgrind* process's maps, which hold
        the guest's mappings). ``file_size`` is filled by ``os.stat`` where the path exists.
    out_path : path-like, optional
        If given, the trace is also written there atomically (``.fftrace``).
    allow_unmapped : bool, optional
        Keep accesses outside every mapping (they count as anonymous memory for the simulator)
        instead of raising.
    max_accesses : int, optional
        Stop after this many (expanded) page accesses.

    Returns
    -------
    Trace
        Collapsed rows and every mapping of the maps file.

    Raises
    ------
    fastfault.errors.InputError
        Malformed log or maps file; or, unless ``allow_unmapped``, an access outside every
        mapping (the message names the log line of the first one).
    """
    from fastfault.trace.maps import parse_maps

    maps = parse_maps(maps_path, stat_files=True)
    parser = parse_lackey(log_path, max_accesses=max_accesses)
    arrays = parser.result()
    idx = _mapping_index(arrays["vpn"], maps)
    unmapped = idx < 0
    n_unmapped = int(arrays["count"][unmapped].sum(dtype=np.int64))
    if n_unmapped and not allow_unmapped:
        tracked = parse_lackey(log_path, max_accesses=max_accesses, track_lines=True).result()
        bad = int(np.argmax(_mapping_index(tracked["vpn"], maps) < 0))
        line = int(tracked["line"][bad])
        raise InputError(
            f"{log_path}:{line}: page {int(tracked['vpn'][bad]) << PAGE_SHIFT:#x} is outside every "
            f"mapping of {maps_path} ({n_unmapped} such accesses; pass --allow-unmapped to keep them): "
            f"{_line_text(log_path, line)!r}"
        )
    meta = _base_meta(parser) | {
        "source_log": str(log_path),
        "source_maps": str(maps_path),
        "unmapped_accesses": n_unmapped,
        "host": platform.node(),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    trace = make_trace(arrays["vpn"], arrays["kind"], arrays["count"], maps, meta)
    if out_path is not None:
        save_trace(out_path, trace)
    return trace
