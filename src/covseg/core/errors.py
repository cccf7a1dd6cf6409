"""The one exception type the CLI turns into a one-line message instead of a traceback."""


class CovsegError(Exception):
    """A user-facing error: its message is one line naming the file or option and what is wrong."""
