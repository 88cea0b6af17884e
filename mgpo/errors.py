"""User-facing errors: one line that names the input and the fix. The CLI prints these without a traceback."""


class MgpoError(Exception):
    """A problem with the user's input or setup, worded as one line for the terminal."""


class ImageError(MgpoError):
    """An image that cannot be used: unreadable, too large, too small, or of an impossible shape."""


class ModelLoadError(MgpoError):
    """A model id or directory that cannot be loaded."""


# ---------------------------------------------------------------------------------------------------------------
# Bugs versus failures: a sample that failed because of a bug in mgpo is an "internal" error, never a "backend" one,
# because --resume retries backend errors (a server went away) and would retry a bug forever.

PROGRAMMING_ERRORS = (AssertionError, AttributeError, IndexError, KeyError, NameError, NotImplementedError, TypeError,
                      UnboundLocalError, ZeroDivisionError)  # fmt: skip


def is_bug(exc: BaseException) -> bool:
    """True for the exceptions a mistake in code raises (TypeError, KeyError, ...), as opposed to a failing
    model, server or device (RuntimeError from torch, OSError, httpx errors) or a user error (MgpoError)."""
    return isinstance(exc, PROGRAMMING_ERRORS) and not isinstance(exc, MgpoError)


def debug_traceback(exc: BaseException) -> str | None:
    """The full traceback when MGPO_DEBUG is set (kept in the trajectory's meta), else None."""
    import os
    import traceback

    if not os.environ.get("MGPO_DEBUG"):
        return None
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (at most 200 characters of it)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200]}" if text else type(exc).__name__


INTERNAL_HINT = "a bug in mgpo; please report it (MGPO_DEBUG=1 keeps the traceback in the trajectory's meta)"
