"""The mark of an error caused by the user's input (a file, an argument), not by a bug.

Raised as, e.g., ``class ImageReadError(InputError, OSError)``: callers keep catching the usual
built-in type, and the command lines print an ``InputError`` as its one-line message instead of a
traceback (``anomalib_cli.py``; ``ISPAD_TRACEBACK=1`` shows the traceback again).
"""

from __future__ import annotations

import re


class InputError(Exception):
    """Bad input; its message names the file or argument and what is wrong, on one line."""


class BadArgument(InputError, ValueError):
    """An argument out of its range or set; the message names it, its allowed values and what came."""


class MissingDataError(InputError, FileNotFoundError):
    """A folder or file the dataset layout needs is absent; the message names it."""


_UNION = "Does not validate against any of the Union subtypes"


def config_errors(err: BaseException) -> str | None:
    """The reasons in jsonargparse's wrapper of a failed ``model``/``data`` instantiation.

    Their types are unions (``AnomalibModule | None``), so jsonargparse collects the error of each
    member and raises a ``ValueError`` listing them with the whole config; the user's error is the
    one that is not "Expected a <class 'NoneType'>".
    """
    text = str(err)
    if not isinstance(err, ValueError) or _UNION not in text or "\nErrors:\n" not in text:
        return None
    block = text.split("\nErrors:\n", 1)[1].split("\nGiven value type:", 1)[0]
    reasons = [line.strip()[2:] for line in block.splitlines()
               if line.strip().startswith("- ") and "Expected a <class 'NoneType'>" not in line]
    return "; ".join(reasons) or None


def one_line(err: BaseException) -> str:
    """The user-facing text of ``err`` on one line: jsonargparse's union wrapper reduced to its reason
    (:func:`config_errors`), PyTorch's DataLoader re-raise ("Caught X in DataLoader worker process 0.
    Original Traceback ... X: <message>") unwrapped to its message, the lines of a longer message
    joined by `` | ``."""
    if reason := config_errors(err):
        return reason
    text = str(err).strip()
    if "Original Traceback" in text:
        last = text.splitlines()[-1].strip()
        name = re.escape(type(err).__name__)
        text = re.sub(rf"^(?:[\w.]+\.)?{name}: ", "", last)  # "pkg.mod.ImageReadError: <message>"
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())
