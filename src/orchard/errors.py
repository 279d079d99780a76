"""The one exception type a user sees: a message that says what went wrong and how to fix it."""


class OrchardError(Exception):
    """A problem the user can fix; the CLI prints it on one line and exits non-zero."""

    exit_code = 2
