"""Integer codes shared by the jitted kernels, the reference and the I/O layers.

Every code is an ``IntEnum`` so that Python code reads well while the jitted
kernels see plain integers.
"""

from __future__ import annotations

from enum import IntEnum


class AccessKind(IntEnum):
    """Kind of one traced memory access (``uint8`` in trace arrays)."""

    LOAD = 0
    STORE = 1
    IFETCH = 2
