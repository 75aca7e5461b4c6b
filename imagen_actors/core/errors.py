"""The project's own exceptions. Library errors are translated into these at the boundary."""

from __future__ import annotations

from typing import Literal

ErrorClass = Literal["transient", "permanent", "dependency", "configuration"]
"""What a failure says about whom.

- ``transient``/``permanent``: a *job fault* (this request is bad, or failed in a way worth
  one more try); it consumes an attempt.
- ``dependency``: the backend or store is down, slow or overloaded (refused, reset, timed
  out, 5xx, 429); ``configuration``: it is set up wrong (a rejected key, a missing bucket,
  model file, node class or token). Neither consumes an attempt: the dependency is marked
  unhealthy and the job waits pending (``worker/health.py``).
"""
Fault = Literal["dependency", "configuration"]
"""The two classes that are a dependency's, not the job's."""


def is_outage(error_class: str) -> bool:
    """A dependency or configuration fault: not the job's, so it costs no attempt."""
    return as_fault(error_class) is not None


def as_fault(error_class: str) -> Fault | None:
    if error_class == "dependency":
        return "dependency"
    if error_class == "configuration":
        return "configuration"
    return None


class ImagenError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(ImagenError):
    """A configuration value is missing or wrong; the message names the key and the fix.

    ``key`` is the dotted key path (``worker.lease_s``, ``backends.flux.workflow``) when
    the error is about one setting.
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class UsageError(ImagenError):
    """Command-line arguments that cannot work together; the message names the flags and
    the fix. The CLI exits 2, like argparse does for a single bad argument."""


class DatabaseError(ImagenError):
    """A database operation failed."""


class DatabaseUnavailableError(DatabaseError):
    """The database cannot be reached (connection refused, dropped, timed out)."""


class ConcurrencyError(DatabaseError):
    """Another writer advanced the job first (version moved, or a (job_id, seq) conflict)."""


class LeaseLostError(ConcurrencyError):
    """The job is no longer held by this worker: its lease expired and it was requeued."""


class CancelRequestedError(ImagenError):
    """The owner (or an operator) asked to cancel the job this work is for: stop it and record
    ``JobCancelled`` (``imagen.cancel_job``)."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class JobNotFoundError(DatabaseError):
    """No job with that id exists."""


class MigrationError(DatabaseError):
    """A migration could not be applied, or an applied file was changed afterwards."""


class ConstraintViolationError(DatabaseError):
    """A row was refused by a CHECK or other constraint; ``constraint`` names which."""

    def __init__(self, message: str, *, constraint: str | None) -> None:
        super().__init__(message)
        self.constraint = constraint


class GenerationError(ImagenError):
    """A backend could not make the image.

    ``error_class`` decides what happens to the job: ``transient`` failures are retried
    up to max_attempts, ``permanent`` ones fail the job at once, ``dependency`` and
    ``configuration`` ones requeue it with its attempt refunded and mark the backend
    unhealthy.
    """

    error_class: ErrorClass = "permanent"

    def __init__(self, message: str, *, error_class: ErrorClass | None = None) -> None:
        super().__init__(message)
        if error_class is not None:
            self.error_class = error_class


class StorageError(ImagenError):
    """Storing an object failed. Same classes as GenerationError (``dependency``: storage
    is down; ``configuration``: a rejected key or a missing bucket)."""

    error_class: ErrorClass = "transient"

    def __init__(self, message: str, *, error_class: ErrorClass | None = None) -> None:
        super().__init__(message)
        if error_class is not None:
            self.error_class = error_class
