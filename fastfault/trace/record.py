"""Record a real program's page-access trace with valgrind lackey.

How it works
------------
``valgrind --tool=lackey --trace-mem=yes --log-file=FIFO --vgdb=no PROGRAM ARGS...`` is started
with its log going to a named pipe that a reader thread drains with the jitted lackey parser
(:class:`~fastfault.trace.lackey.LackeyParser`), collapsing same-page runs on the fly, so no
text log is ever stored.

**Where the mappings come from.** Valgrind runs the guest inside its own process: its loader
maps the guest's executable and ``ld.so`` with real ``mmap`` calls at the guest addresses, and
the guest's ``mmap`` calls (shared libraries, locale files, anonymous memory) are executed for
real at the addresses the guest sees. The guest's address space is therefore visible in
``/proc/<valgrind pid>/maps`` with the real file names and offsets, next to valgrind's own
mappings (the tool binary, its heap and translation cache), which the guest never touches.

**When they are read (exact mode, the default on x86-64 and arm64).** The child installs a
seccomp filter that returns ``SECCOMP_RET_TRACE`` for the address-space-changing system calls
(``mmap``, ``munmap``, ``mremap``, ``shmat``, ``shmdt``) and for ``exit_group``, and is traced
with ``ptrace`` (``PTRACE_O_TRACESECCOMP``, following threads and forks). At each such stop
the process is frozen *before* the call changes anything; because valgrind writes each lackey
line with its own ``write`` before continuing, every access made so far is already in the
pipe. The tracer has the reader drain the pipe, notes the number of accesses parsed (the
snapshot's *tag*) and reads ``/proc/<pid>/maps``: that snapshot is exactly the address space
of the accesses between the previous tag and this one. The ``exit_group`` stop gives the final
state (with ``--max-accesses`` the process is stopped with ``SIGSTOP`` right after the limit).

**Attribution.** The snapshots are painted in time order into one static table (later wins).
Each access is then checked against the snapshot of its own epoch: if the address was backed
by something else at that time (e.g. ``ld.so`` reads ``/etc/ld.so.cache`` through an ``mmap``
that is unmapped later, and the address is reused for a locale file), the accesses of that
earlier mapping are *relocated* to a fresh, unused virtual range (same offset within 2 MiB)
with their own mapping entry, so the static table stays truthful about which file page each
access read (``meta["mapping_discovery"]["relocated"]`` lists them). Finally valgrind's tool
binary and every mapping no access touched are dropped.

**Fallback (polling).** If seccomp/ptrace is unavailable, ``/proc/<pid>/maps`` is polled
every ``poll_interval`` seconds and snapshots are painted without timing: a mapping created
and removed between two polls is missed (its accesses stay unattributed, counted in
``meta["unmapped_accesses"]``), and accesses to a reused address are attributed to the last
mapping seen there (reported in ``meta["mapping_discovery"]["address_reuse"]``).

**Limits.** Permissions are the last ones seen (RELRO pages end ``r--p`` though they were
written during relocation). Addresses are valgrind's layout of the guest (no ASLR: ``ld.so``
at ``0x4000000``, stack near ``0x1fff000000``), not the native one. A program that forks
without exec'ing has its child's lackey lines interleaved in the same log (valgrind keeps
tracing the child); children are traced (with ptrace) until they exit. The program runs in
its own process group (the tracer waits on that group only). Accesses the kernel makes to
user memory on the program's behalf (``copy_to_user`` in ``read()``, for instance, which can
fault pages in) are not in the lackey log. A mapping replaced by one with the same backing
(``ld.so`` reserves a library's whole extent, then maps its segments over it with
``MAP_FIXED``) is not relocated, so the simulator sees pages touched through the first mapping
as still mapped. Exact mode was developed and tested on x86-64; the arm64 system-call table is
included but untested.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as _dt
import fcntl
import os
import platform
import select
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from fastfault.errors import InputError
from fastfault.trace.format import (
    PAGE_SHIFT,
    Mapping,
    Trace,
    _mapping_index,
    collapse_runs,
    make_trace,
    save_trace,
)
from fastfault.trace.lackey import LackeyParser
from fastfault.trace.maps import file_size_of, parse_maps_text

VALGRIND_MISSING = "valgrind is not installed; install it with `apt-get install valgrind`"

_PTRACE_TRACEME = 0
_PTRACE_CONT = 7
_PTRACE_SETOPTIONS = 0x4200
_PTRACE_GETEVENTMSG = 0x4201
_PTRACE_GETSIGINFO = 0x4202
_O_TRACEFORK, _O_TRACEVFORK, _O_TRACECLONE, _O_TRACEEXEC = 0x2, 0x4, 0x8, 0x10
_O_TRACEEXIT, _O_TRACESECCOMP, _O_EXITKILL = 0x40, 0x80, 0x100000
_EV_FORK, _EV_VFORK, _EV_CLONE, _EV_EXEC, _EV_VFORK_DONE, _EV_EXIT, _EV_SECCOMP = 1, 2, 3, 4, 5, 6, 7
_WALL = 0x40000000
_F_SETPIPE_SZ = 1031
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_SECCOMP_RET_ALLOW = 0x7FFF0000
_SECCOMP_RET_TRACE = 0x7FF00000

#: machine -> (AUDIT_ARCH, system call numbers to stop at: mmap, munmap, mremap, shmat, shmdt, exit_group)
_SYSCALLS = {
    "x86_64": (0xC000003E, (9, 11, 25, 30, 67, 231)),
    "aarch64": (0xC00000B7, (222, 215, 216, 196, 197, 94)),
}

_libc: Any = None


def _lib() -> Any:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
        _libc.ptrace.restype = ctypes.c_long
        _libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
        _libc.prctl.restype = ctypes.c_int
    return _libc


def _ptrace(request: int, pid: int, addr: int = 0, data: int = 0) -> int:
    res = _lib().ptrace(request, pid, ctypes.c_void_p(addr), ctypes.c_void_p(data))
    if res == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return res


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _seccomp_filter() -> tuple[ctypes.Array, _SockFprog] | None:
    """A BPF program: SECCOMP_RET_TRACE for the listed calls, ALLOW otherwise (None if unsupported)."""
    spec = _SYSCALLS.get(platform.machine())
    if spec is None:
        return None
    arch, calls = spec
    ld_abs_w, jeq_k, ret_k = 0x20, 0x15, 0x06
    n = len(calls)
    insns = [(ld_abs_w, 0, 0, 4), (jeq_k, 0, n + 1, arch), (ld_abs_w, 0, 0, 0)]
    for i, nr in enumerate(calls):
        insns.append((jeq_k, n - i, 0, nr))  # jump to the TRACE return
    insns.append((ret_k, 0, 0, _SECCOMP_RET_ALLOW))
    insns.append((ret_k, 0, 0, _SECCOMP_RET_TRACE))
    raw = b"".join(struct.pack("=HBBI", *ins) for ins in insns)
    buf = ctypes.create_string_buffer(raw, len(raw))
    prog = _SockFprog(len(insns), ctypes.cast(buf, ctypes.c_void_p))
    return buf, prog


def _child_setup(prog: _SockFprog | None) -> Any:
    """preexec_fn: become traced, then (exact mode) install the seccomp filter."""

    def setup() -> None:
        lib = _lib()
        if lib.ptrace(_PTRACE_TRACEME, 0, None, None) != 0:
            raise OSError(ctypes.get_errno(), "ptrace(PTRACE_TRACEME)")
        if prog is not None:
            if os.geteuid() != 0 and lib.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
            if lib.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(prog), 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")

    return setup


# ---------------------------------------------------------------------------- mapping tables


def _same_backing(a: Mapping, b: Mapping) -> bool:
    """True if ``a`` and ``b`` map the same bytes wherever they overlap (permissions may differ)."""
    if a.is_file != b.is_file:
        return False
    if not a.is_file:
        return True
    return a.path == b.path and a.offset - a.start == b.offset - b.start


def paint_mappings(
    snapshots: list[tuple[Mapping, ...]], conflicts: list[dict[str, Any]] | None = None
) -> list[Mapping]:
    """Merge maps snapshots taken over time into one non-overlapping table.

    Parameters
    ----------
    snapshots : list of tuple of Mapping
        In chronological order.
    conflicts : list, optional
        If given, receives one ``{"start", "end", "old", "new"}`` dict for every address range that
        was reused for another file (or for file after anonymous memory).

    Returns
    -------
    list of Mapping
        Sorted by ``start``. Each snapshot's mappings are painted over the table in order, so where
        two snapshots disagree the later one wins and a partially covered older mapping keeps its
        uncovered pieces (with file offsets adjusted).
    """
    table: list[Mapping] = []
    previous: set[Mapping] = set()
    for snap in snapshots:
        current = set(snap)
        for m in (m for m in snap if m not in previous):  # unchanged mappings are painted already
            kept: list[Mapping] = []
            for t in table:
                if t.end <= m.start or t.start >= m.end:
                    kept.append(t)
                    continue
                if conflicts is not None and m.is_file and not _same_backing(t, m):
                    conflicts.append(
                        {
                            "start": hex(max(t.start, m.start)),
                            "end": hex(min(t.end, m.end)),
                            "old": t.path or "[anon]",
                            "new": m.path,
                        }
                    )
                if t.start < m.start:
                    kept.append(Mapping(t.start, m.start, t.offset, t.perms, t.path, t.file_size))
                if t.end > m.end:
                    shift = m.end - t.start if t.is_file else 0
                    kept.append(Mapping(m.end, t.end, t.offset + shift, t.perms, t.path, t.file_size))
            kept.append(m)
            kept.sort(key=lambda x: x.start)
            table = kept
        previous = current
    return table


def _backing_arrays(table: tuple[Mapping, ...], path_ids: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Per mapping: path id (-1 anonymous) and ``pgoff - start_vpn`` (0 for anonymous)."""
    pid = np.array([path_ids.setdefault(m.path, len(path_ids)) if m.is_file else -1 for m in table], np.int64)
    rel = np.array([m.pgoff - m.start_vpn if m.is_file else 0 for m in table], dtype=np.int64)
    return pid, rel


def _split_rows_at(vpn, kind, count, tags):
    """Split rows so that no row straddles an access index in ``tags``; return arrays and row starts."""
    cend = np.cumsum(count, dtype=np.int64)
    cstart = cend - count
    total = int(cend[-1]) if cend.size else 0
    cuts = np.unique(tags[(tags > 0) & (tags < total)])
    pos = np.searchsorted(cstart, cuts)
    inside = cstart[np.minimum(pos, cstart.shape[0] - 1)] != cuts  # the cut falls inside a row
    if not inside.any():
        return vpn, kind, count, cstart
    starts = np.insert(cstart, pos[inside], cuts[inside])
    src = np.searchsorted(cstart, starts, side="right") - 1
    new_count = np.diff(np.append(starts, total)).astype(np.uint32)
    return vpn[src], kind[src], new_count, starts


def _attribute_exact(
    vpn: np.ndarray,
    kind: np.ndarray,
    count: np.ndarray,
    snaps: list[tuple[int, tuple[Mapping, ...]]],
    stats: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Mapping]]:
    """Attribute rows with exact (tagged) snapshots; relocate accesses to replaced mappings.

    Parameters
    ----------
    vpn, kind, count : numpy.ndarray, shape (n,)
        The parsed rows (int64, uint8, uint32).
    snaps : list of (int, tuple of Mapping)
        ``(tag, table)``: ``table`` is the address space of the accesses with index in
        ``[previous tag, tag)``; tags are non-decreasing.
    stats : dict
        Receives ``relocated`` (list of dicts) and ``epochs``.

    Returns
    -------
    vpn, kind, count : numpy.ndarray
        Rows, split at tags where needed, with relocated page numbers.
    table : list of Mapping
        Painted static table plus the relocated mappings (untouched ones not yet removed).
    """
    tags = np.array([t for t, _ in snaps], dtype=np.int64)
    vpn, kind, count, starts = _split_rows_at(vpn, kind, count, tags)
    final = paint_mappings([table for _, table in snaps])
    path_ids: dict[str, int] = {}
    f_pid, f_rel = _backing_arrays(tuple(final), path_ids)
    f_idx = _mapping_index(vpn, tuple(final))
    epoch = np.minimum(np.searchsorted(tags, starts, side="right"), len(snaps) - 1)
    bounds = np.searchsorted(epoch, np.arange(len(snaps) + 1), side="left")
    used = [j for j in range(len(snaps)) if bounds[j] < bounds[j + 1]]
    stats["epochs"] = len(used)
    # pass 1: mappings (as seen in their epoch) through which some access read other contents than
    # the static table holds at that address
    stale_keys: set[Mapping] = set()
    for j in used:
        lo, hi = int(bounds[j]), int(bounds[j + 1])
        table = snaps[j][1]
        if not table:
            continue
        e_idx = _mapping_index(vpn[lo:hi], table)
        e_pid, e_rel = _backing_arrays(table, path_ids)
        fi = f_idx[lo:hi]
        both = (e_idx >= 0) & (fi >= 0)
        ei, fj = e_idx[both], fi[both]
        differ = (e_pid[ei] != f_pid[fj]) | ((e_pid[ei] >= 0) & (e_rel[ei] != f_rel[fj]))
        stale_keys.update(table[int(k)] for k in np.unique(ei[differ]))
        stale_keys.update(table[int(k)] for k in np.unique(e_idx[(e_idx >= 0) & (fi < 0)]))
    # merge stale mappings with the same backing that overlap (one incarnation seen with several
    # extents), and give each group a fresh range above everything the guest used
    groups: list[tuple[Mapping, list[Mapping]]] = []
    for m in sorted(stale_keys, key=lambda x: (x.path, x.offset - x.start, x.start)):
        if groups and _same_backing(groups[-1][0], m) and m.start <= groups[-1][0].end:
            prev, members = groups[-1]
            lo_addr = min(prev.start, m.start)
            off = prev.offset - (prev.start - lo_addr) if prev.is_file else 0
            groups[-1] = (Mapping(lo_addr, max(prev.end, m.end), off, m.perms, m.path, m.file_size), [*members, m])
        else:
            groups.append((m, [m]))
    two_mib = 2 << 20
    touched = np.unique(f_idx[f_idx >= 0])
    top = max([final[int(i)].end for i in touched] + [0])
    relocated_maps: list[Mapping] = []
    shift_of: dict[Mapping, tuple[int, int]] = {}  # member -> (group, vpn shift)
    for g, (m, members) in enumerate(groups):
        base = ((top + two_mib - 1) // two_mib) * two_mib + (m.start % two_mib)
        new = Mapping(base, base + (m.end - m.start), m.offset, m.perms, m.path, m.file_size)
        relocated_maps.append(new)
        top = new.end
        for member in members:
            shift_of[member] = (g, (base - m.start) >> PAGE_SHIFT)
    # pass 2: move every access made through a stale mapping (the whole incarnation, so that it
    # keeps its extent for fault-around) to the relocated range
    moved = np.zeros(len(groups), dtype=np.int64)
    if groups:
        vpn = vpn.copy()
        for j in used:
            lo, hi = int(bounds[j]), int(bounds[j + 1])
            table = snaps[j][1]
            shifts = np.array([shift_of.get(m, (-1, 0)) for m in table], dtype=np.int64).reshape(-1, 2)
            if not table or (shifts[:, 0] < 0).all():
                continue
            e_idx = _mapping_index(vpn[lo:hi], table)
            rows = np.flatnonzero((e_idx >= 0) & (shifts[np.maximum(e_idx, 0), 0] >= 0))
            k = e_idx[rows]
            vpn[lo + rows] += shifts[k, 1]
            np.add.at(moved, shifts[k, 0], count[lo + rows].astype(np.int64))
    stats["relocated"] = [
        {
            "path": m.path or "[anon]",
            "original": f"{m.start:x}-{m.end:x}",
            "relocated": f"{new.start:x}-{new.end:x}",
            "accesses": int(moved[g]),
        }
        for g, ((m, _), new) in enumerate(zip(groups, relocated_maps, strict=True))
    ]
    return vpn, kind, count, list(final) + relocated_maps


def _finish_table(
    vpn: np.ndarray, count: np.ndarray, table: list[Mapping], tool_exe: str | None, keep_untouched: bool
) -> tuple[tuple[Mapping, ...], int, int]:
    """Drop the tool binary and untouched mappings; fill file sizes; count unmapped accesses."""
    table = sorted((m for m in table if not (tool_exe and m.path == tool_exe)), key=lambda m: m.start)
    idx = _mapping_index(vpn, tuple(table))
    touched = np.zeros(len(table), dtype=bool)
    touched[np.unique(idx[idx >= 0])] = True
    kept = [m for m, t in zip(table, touched, strict=True) if t or (keep_untouched and m.is_file)]
    final = tuple(
        Mapping(m.start, m.end, m.offset, m.perms, m.path, file_size_of(m.path) if m.is_file else -1) for m in kept
    )
    unmapped = int(count[idx < 0].sum(dtype=np.int64))
    return final, unmapped, len(table) - len(kept)


# ------------------------------------------------------------------------------- log reader


class _LogReader:
    """Drain the FIFO into the parser; on request, report the access count once the pipe is empty."""

    def __init__(self, fifo: Path, parser: LackeyParser, chunk_bytes: int = 16 << 20) -> None:
        self.parser = parser
        self.fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        with contextlib.suppress(OSError):
            fcntl.fcntl(self.fd, _F_SETPIPE_SZ, 1 << 20)
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.buf = np.empty(chunk_bytes, dtype=np.uint8)
        self.view = memoryview(self.buf)
        self.tail = 0
        self.eof = False
        self.hup = False
        self.child_exited = False
        self.sync_pending = False
        self.sync_done = threading.Event()
        self.lock = threading.Lock()
        self.done = False
        self.tag = 0
        self.error: BaseException | None = None
        self.on_limit: Any = None
        self._limit_reported = False
        self.min_read = 256 << 10
        self.idle_sleep_ms = 5

    def wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(self.wake_w, b"x")

    def sync(self) -> int:
        """Block until every byte written so far is parsed; return the access count."""
        with self.lock:
            if self.done:  # the log is complete (or the reader failed): nothing more will come
                return self.parser.accesses
            self.sync_done.clear()
            self.sync_pending = True
        self.wake()
        self.sync_done.wait()
        return self.parser.accesses if self.done else self.tag

    def _drain(self) -> int:
        total = 0
        while True:
            try:
                got = os.readv(self.fd, [self.view[self.tail :]])
            except BlockingIOError:
                return total
            if got == 0:
                if self.hup or self.child_exited:
                    self.eof = True
                return total
            total += got
            end = self.tail + got
            used = self.parser.feed(self.buf, end)
            self.tail = end - used
            if self.tail == self.buf.shape[0]:
                raise InputError(f"{self.parser.source}:{self.parser.lines + 1}: line longer than {end} bytes")
            if self.tail:
                self.buf[: self.tail] = self.buf[used:end]
            if self.parser.limit_reached and not self._limit_reported:
                self._limit_reported = True
                if self.on_limit is not None:
                    self.on_limit()

    def run(self) -> None:
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        poller.register(self.wake_r, select.POLLIN)
        idle = select.poll()
        idle.register(self.wake_r, select.POLLIN)
        try:
            while not self.eof:
                for fd, ev in poller.poll():
                    if fd == self.fd and ev & select.POLLHUP:
                        self.hup = True
                with contextlib.suppress(BlockingIOError):
                    os.read(self.wake_r, 4096)
                pending = self.sync_pending  # read before draining: see `sync`
                got = self._drain()
                if pending:
                    self.tag = self.parser.accesses
                    self.sync_pending = False
                    self.sync_done.set()
                if self.child_exited and not self.eof:
                    self._drain()
                    self.eof = True
                if not self.eof and got < self.min_read and not self.sync_pending:
                    idle.poll(self.idle_sleep_ms)  # let valgrind fill the pipe (it writes line by line)
            self.parser.feed(self.buf, self.tail, final=True)
        except BaseException as err:  # noqa: BLE001  (re-raised by record())
            self.error = err
            if self.on_limit is not None:
                self.on_limit(kill=True)
        finally:
            with self.lock:
                self.done = True
                self.sync_done.set()

    def close(self) -> None:
        for fd in (self.fd, self.wake_r, self.wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)


# ---------------------------------------------------------------------------------- tracer


class _Tracer:
    """Drive the ptrace'd valgrind: snapshot the maps at every seccomp stop of its process."""

    def __init__(self, pid: int, reader: _LogReader, launcher: str, exact: bool) -> None:
        self.pid = pid
        self.reader = reader
        self.launcher = os.path.realpath(launcher)
        self.exact = exact
        self.traced = True
        self.snapshots: list[tuple[int, str]] = []
        self.tool_exe: str | None = None
        self.final = False
        self.limit_stop = False
        self.killed_at_limit = False
        self.stops = 0
        self.cpu_seconds = float("nan")

    def read_maps(self) -> str | None:
        try:
            if self.tool_exe is None:
                exe = os.readlink(f"/proc/{self.pid}/exe")
                if os.path.realpath(exe) == self.launcher:
                    return None
                self.tool_exe = exe
            with open(f"/proc/{self.pid}/maps", "rb") as fh:
                return fh.read().decode("utf-8", "surrogateescape")
        except OSError:
            return None

    def snapshot(self, *, sync: bool) -> None:
        text = self.read_maps()
        if not text:  # not the tool yet, or the process is being torn down
            return
        tag = self.reader.sync() if sync else self.reader.parser.accesses
        if self.snapshots and self.snapshots[-1][1] == text:
            return  # same address space as before: the previous snapshot's epoch simply extends
        self.snapshots.append((tag, text))

    def request_limit_stop(self, kill: bool = False) -> None:
        """Called by the reader when --max-accesses is reached (or on a reader error).

        Traced, the process is stopped with SIGSTOP and the tracer takes the last snapshot before
        killing it; untraced, the snapshot is taken here (the guest is about to block on the pipe).
        """
        self.limit_stop = True
        if not self.traced and not kill:
            self.snapshot(sync=False)
            self.final = True
            kill = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL if kill else signal.SIGSTOP)

    def _tgid(self, tid: int) -> int:
        try:
            with open(f"/proc/{tid}/status") as fh:
                for line in fh:
                    if line.startswith("Tgid:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return -1

    def run_untraced(self) -> int:
        """Wait for an untraced valgrind (polling mode without ptrace); return its exit status."""
        _, status, usage = os.wait4(self.pid, 0)
        self.cpu_seconds = usage.ru_utime + usage.ru_stime
        self.reader.child_exited = True
        self.reader.wake()
        return os.waitstatus_to_exitcode(status)

    def run(self) -> int:
        """Return valgrind's exit status (``-signal`` if killed)."""
        status_main: int | None = None
        known: dict[int, bool] = {}  # tid -> belongs to valgrind's process
        options = _O_TRACEEXEC | _O_TRACEEXIT | _O_EXITKILL | _O_TRACECLONE | _O_TRACEFORK | _O_TRACEVFORK
        if self.exact:
            options |= _O_TRACESECCOMP
        options_set = False
        alive = {self.pid}
        started: set[int] = set()
        while alive:
            try:
                tid, status, usage = os.wait4(-self.pid, _WALL)  # valgrind's process group
            except ChildProcessError:
                break
            if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                alive.discard(tid)
                if tid == self.pid:
                    self.cpu_seconds = usage.ru_utime + usage.ru_stime
                    status_main = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)
                    self.reader.child_exited = True
                    self.reader.wake()
                continue
            if not os.WIFSTOPPED(status):
                continue
            alive.add(tid)
            if tid not in known:
                known[tid] = tid == self.pid or self._tgid(tid) == self.pid
            main = known[tid]
            sig = os.WSTOPSIG(status)
            event = (status >> 16) & 0xFF
            inject = 0
            if sig == signal.SIGTRAP and event == _EV_SECCOMP:
                if main and not self.final:
                    self.stops += 1
                    self.snapshot(sync=True)
            elif sig == signal.SIGTRAP and event == _EV_EXIT:
                if tid == self.pid and not self.final:
                    self.snapshot(sync=True)
                    self.final = True
            elif sig == signal.SIGTRAP and event in (_EV_CLONE, _EV_FORK, _EV_VFORK):
                msg = ctypes.c_ulong()
                with contextlib.suppress(OSError):
                    _ptrace(_PTRACE_GETEVENTMSG, tid, 0, ctypes.addressof(msg))
                    child = int(msg.value)
                    known[child] = main and event == _EV_CLONE
                    alive.add(child)
            elif sig == signal.SIGTRAP and event in (_EV_EXEC, _EV_VFORK_DONE):
                pass
            elif sig == signal.SIGTRAP and tid == self.pid and not options_set:
                _ptrace(_PTRACE_SETOPTIONS, tid, 0, options)
                options_set = True
            elif sig == signal.SIGSTOP and main and self.limit_stop and not self.killed_at_limit:
                self.snapshot(sync=True)
                self.final = True
                self.killed_at_limit = True
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
            elif sig == signal.SIGSTOP and tid not in started:
                inject = 0  # an auto-attached new task's initial stop
            elif event == 0:
                siginfo = ctypes.create_string_buffer(128)
                try:
                    _ptrace(_PTRACE_GETSIGINFO, tid, 0, ctypes.addressof(siginfo))
                    inject = sig  # signal-delivery-stop: pass the signal on
                except OSError:
                    inject = 0  # group-stop
            started.add(tid)
            with contextlib.suppress(ProcessLookupError, OSError):
                _ptrace(_PTRACE_CONT, tid, 0, inject)
        return status_main if status_main is not None else -1


def _poll_maps(tracer: _Tracer, stop: threading.Event, interval: float) -> None:
    while not stop.wait(interval):
        tracer.snapshot(sync=False)


def record(
    command: list[str],
    out_path: str | os.PathLike[str] | None = None,
    *,
    max_accesses: int | None = None,
    exact: bool = True,
    poll_interval: float = 0.002,
    valgrind: str = "valgrind",
    keep_untouched: bool = False,
    echo_output: bool = False,
    cwd: str | os.PathLike[str] | None = None,
) -> Trace:
    """Run ``command`` under valgrind lackey and return (and optionally save) its page-access trace.

    Parameters
    ----------
    command : list of str
        Program and arguments (``command[0]`` is looked up on ``PATH``). A wrapper script (e.g. a
        pyenv shim) is traced as the shell running it; pass the real binary.
    out_path : path-like, optional
        Write the trace there atomically (``.fftrace``).
    max_accesses : int, optional
        Keep only the first this many page accesses and kill the program then.
    exact : bool, optional
        Snapshot the maps at every address-space change (seccomp + ptrace, see the module
        docstring); if False, or if that is not possible here, poll every ``poll_interval`` s.
    poll_interval : float, optional
        Seconds between ``/proc/<pid>/maps`` snapshots in polling mode.
    valgrind : str, optional
        The valgrind executable.
    keep_untouched : bool, optional
        Also keep file mappings of the guest that no access touched.
    echo_output : bool, optional
        Let the program's stdout/stderr through (default: discarded; valgrind's stderr is quoted
        on failure).
    cwd : path-like, optional
        Working directory of the program.

    Returns
    -------
    Trace
        Collapsed page accesses, the guest's mappings and ``meta`` (command, host, date, kernel,
        valgrind version, counts, mapping-discovery details).

    Raises
    ------
    fastfault.errors.InputError
        valgrind or the command is missing, valgrind fails before tracing anything, or the log
        is malformed.
    """
    if not command:
        raise InputError("record: no command given")
    vg = shutil.which(valgrind)
    if vg is None:
        raise InputError(VALGRIND_MISSING)
    exe = command[0] if os.sep in command[0] else shutil.which(command[0])
    if exe is None or not os.path.isfile(exe):
        raise InputError(f"record: command not found: {command[0]}")
    if max_accesses is not None and max_accesses < 1:
        raise InputError(f"record: --max-accesses must be >= 1, got {max_accesses}")
    version = subprocess.run([vg, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    bpf = _seccomp_filter() if exact else None

    with tempfile.TemporaryDirectory(prefix="fastfault-record-") as tmp:
        fifo = Path(tmp) / "lackey.fifo"
        os.mkfifo(fifo, 0o600)
        argv = [vg, "--tool=lackey", "--trace-mem=yes", f"--log-file={fifo}", "--vgdb=no", exe, *command[1:]]
        parser = LackeyParser("<valgrind lackey log>", max_accesses=max_accesses)
        reader = _LogReader(fifo, parser)
        with open(Path(tmp) / "stderr.txt", "w+b") as err_fh:
            out = None if echo_output else subprocess.DEVNULL
            err = None if echo_output else err_fh
            t0 = time.monotonic()
            proc = None
            mode = "exact" if bpf is not None else "poll"
            for attempt in (("exact",) if bpf is not None else ()) + ("poll", "untraced"):
                setup = None if attempt == "untraced" else _child_setup(bpf[1] if attempt == "exact" else None)
                try:
                    proc = subprocess.Popen(
                        argv,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=err,
                        cwd=cwd,
                        preexec_fn=setup,
                        process_group=0,  # so that the tracer waits for this group only
                    )
                except subprocess.SubprocessError:  # ptrace or seccomp refused: degrade
                    continue
                mode = attempt
                break
            assert proc is not None
            tracer = _Tracer(proc.pid, reader, vg, exact=mode == "exact")
            tracer.traced = mode != "untraced"
            reader.on_limit = tracer.request_limit_stop
            rthread = threading.Thread(target=reader.run, name="lackey-reader", daemon=True)
            rthread.start()
            stop_poll = threading.Event()
            pthread = None
            if mode != "exact":
                pthread = threading.Thread(
                    target=_poll_maps, args=(tracer, stop_poll, poll_interval), name="maps-poller", daemon=True
                )
                pthread.start()
            try:
                status = tracer.run() if mode != "untraced" else tracer.run_untraced()
                proc.returncode = status
            except BaseException:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(proc.pid, 0)
                proc.returncode = -9
                raise
            finally:
                stop_poll.set()
                if pthread is not None:
                    pthread.join()
                reader.child_exited = True
                reader.wake()
                rthread.join()
                reader.close()
            elapsed = time.monotonic() - t0
            err_fh.seek(0)
            stderr_tail = err_fh.read().decode("utf-8", "replace").strip().splitlines()[-5:]

    if reader.error is not None:
        raise reader.error
    if parser.accesses == 0:
        detail = " | ".join(stderr_tail) or f"exit status {status}"
        raise InputError(f"record: valgrind produced no trace for {' '.join(command)}: {detail}")
    arrays = parser.result()
    vpn, kind, count = arrays["vpn"], arrays["kind"], arrays["count"]
    cache: dict[str, tuple[Mapping, ...]] = {}

    def parsed(text: str) -> tuple[Mapping, ...]:
        if text not in cache:
            tool = tracer.tool_exe
            cache[text] = tuple(
                m for m in parse_maps_text(text, source=f"/proc/{proc.pid}/maps") if not (tool and m.path == tool)
            )
        return cache[text]

    discovery: dict[str, Any] = {"snapshots": len(tracer.snapshots), "final_snapshot": tracer.final}
    if mode == "exact":
        discovery["method"] = (
            "seccomp(mmap/munmap/mremap/shmat/shmdt/exit_group) + ptrace stops; /proc/<valgrind pid>/maps "
            "read at each stop after draining the log"
        )
        discovery["seccomp_stops"] = tracer.stops
        snaps = [(tag, parsed(text)) for tag, text in tracer.snapshots]
        vpn, kind, count, table = _attribute_exact(vpn, kind, count, snaps, discovery)
    else:
        discovery["method"] = f"poll /proc/<valgrind pid>/maps every {poll_interval} s" + (
            " + ptrace exit snapshot" if mode == "poll" else " (ptrace unavailable)"
        )
        conflicts: list[dict[str, Any]] = []
        table = paint_mappings([parsed(text) for _, text in tracer.snapshots], conflicts)
        discovery["address_reuse"] = conflicts
    vpn, kind, count = collapse_runs(make_trace(vpn, kind, count, (), {}))[:3]  # re-merge split rows
    mappings, unmapped, dropped = _finish_table(vpn, count, table, tracer.tool_exe, keep_untouched)
    discovery["untouched_mappings_dropped"] = dropped
    meta: dict[str, Any] = {
        "command": list(command),
        "executable": os.path.realpath(exe),
        "argv": [*argv[:3], "--log-file=<fifo>", *argv[4:]],
        "host": platform.node(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "tool": f"{version} lackey --trace-mem=yes",
        "exit_status": status,
        "valgrind_seconds": round(elapsed, 3),
        "valgrind_cpu_seconds": round(tracer.cpu_seconds, 3),
        "log_lines": parser.lines,
        "access_lines": parser.access_lines,
        "accesses": parser.accesses,
        "rows": int(vpn.shape[0]),
        "truncated_at_max_accesses": parser.limit_reached,
        "max_accesses": max_accesses,
        "unmapped_accesses": unmapped,
        "mapping_discovery": discovery,
    }
    trace = make_trace(vpn, kind, count, mappings, meta)
    if out_path is not None:
        save_trace(out_path, trace)
    return trace
