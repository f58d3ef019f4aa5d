"""Errors a person can act on.

A ``UsageError`` is bad input: the CLI prints its message as one line and exits with status 2 (no traceback unless
``--debug``). Its message says what was wrong and what to do.
"""


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""

    exit_code = 2
