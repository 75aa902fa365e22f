"""abcmamba: Mamba state-space language models for music in ABC notation."""

__version__ = "0.1.0"


class UserError(Exception):
    """A problem the user can fix (missing file, bad flag value, empty corpus).

    Scripts and the `abcmamba` CLI print it as one line and exit with code 2.
    """
