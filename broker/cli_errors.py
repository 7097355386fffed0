"""The one error a command raises for an expected failure: printed as one line, exit status 2."""

from __future__ import annotations


class CommandError(Exception):
    """Bad input the user can fix (a missing file, a flag without its partner); the message is the line."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
