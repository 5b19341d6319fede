"""The one error hierarchy: every expected failure derives from `CoarseLoftrError`.

Each class says how the two front ends report it: `exit_code` for the `coarse-loftr`
command (one line on stderr, no traceback) and `http_status` with a stable `code` for
the web service (a JSON body in plain words). Anything else is a bug: the command lets
its traceback through, the service answers a generic 500 and logs the details.
"""

from __future__ import annotations


class CoarseLoftrError(Exception):
    """An expected failure whose message is written for the user."""

    exit_code = 2
    http_status = 500
    code = "error"


class InvalidInput(CoarseLoftrError, ValueError):
    """An argument, option or file the caller gave cannot be used."""

    http_status = 422
    code = "invalid_request"


class ResourceBusy(CoarseLoftrError):
    """A bounded resource (the inference queue, the decode budget) is spent: retry later."""

    http_status = 503
    code = "busy"
