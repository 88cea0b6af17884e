"""User-facing errors: one line that names the input and the fix. The CLI prints these without a traceback."""


class MgpoError(Exception):
    """A problem with the user's input or setup, worded as one line for the terminal."""


class ImageError(MgpoError):
    """An image that cannot be used: unreadable, too large, too small, or of an impossible shape."""


class ModelLoadError(MgpoError):
    """A model id or directory that cannot be loaded."""
