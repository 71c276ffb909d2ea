"""What an agent raises to tell the platform how its attempt ended."""

from __future__ import annotations


class NonRetryableError(Exception):
    """Raised by an agent for a failure that retrying cannot fix: the task fails at once."""


class TaskInterrupted(BaseException):
    """Raised in the agent's thread to stop it (a timeout, or its attempt was cancelled or
    declared lost). A BaseException, so an agent's own ``except Exception`` cannot swallow
    it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
