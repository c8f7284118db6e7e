"""Every error a user can cause, each with a one-line message naming the config key, path or
file. No torch here: `plaml-lab --help` and the CLI's error handler import this module only.

The CLI prints `error: <message>` and exits 2 for USER_ERRORS, 3 for NonFiniteLossError."""

from __future__ import annotations


class ConfigError(ValueError):
    """A bad config key or value; the message is one line naming the key."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file."""


class DatasetError(ValueError):
    """A dataset cannot be built or read; the one-line message names the path/file and the problem."""


class RunError(ValueError):
    """A run that must not start (e.g. it would overwrite another run); one-line message."""


class NonFiniteLossError(RuntimeError):
    """A NaN/inf loss with run.on_nonfinite=stop."""


USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, CheckpointError, DatasetError,
                                                RunError, FileNotFoundError)
