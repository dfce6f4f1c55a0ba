"""Every error corral raises on purpose derives from :class:`CorralError`.

Each class's docstring is its default message. Errors carry whether retrying
the same operation could help (``retryable``), so callers decide without
parsing text.
"""

from __future__ import annotations

from dataclasses import dataclass


class CorralError(Exception):
    """corral could not do what was asked."""

    retryable = False

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ScheduleError(CorralError):
    """The schedule is not valid."""


class DurationError(CorralError):
    """The duration is not valid; write it like 90s, 30m, 26h or 2d."""


@dataclass(frozen=True)
class Problem:
    """One mistake in a job file, located as precisely as the file allows."""

    file: str
    line: int | None
    job: str | None
    key: str | None
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        parts = [where]
        if self.job is not None:
            parts.append(f'job "{self.job}"')
        if self.key is not None:
            parts.append(self.key)
        return ": ".join(parts) + ": " + self.message


class ConfigError(CorralError):
    """The job file has mistakes."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in the job file:"
        super().__init__("\n".join([head] + [f"  {p}" for p in self.problems]))


class StoreError(CorralError):
    """The store could not be used."""

    retryable = True


class NotFound(CorralError):
    """No such object."""


class Conflict(CorralError):
    """The object is not in a state that allows this."""


class ExecError(CorralError):
    """The command could not be started."""


class ParamError(CorralError):
    """A job parameter is missing, unknown or not valid."""


class PublishError(CorralError):
    """The item could not be published; the final store was left as it was."""
