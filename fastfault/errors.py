"""Errors the command line turns into a one-line message and exit status 2."""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input (a malformed file, an impossible configuration).

    The CLI prints ``str(err)`` as one line on stderr and exits with status 2;
    nothing is written. The message names the file/field and the reason.
    """
