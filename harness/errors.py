"""Errors the CLI turns into one line and a non-zero exit status."""


class HarnessError(Exception):
    """Bad input from the user (a flag, a config file, a data file, a run id) or a store that cannot be
    used as it is; the message says which and what to do. Exit status 2."""

    def __str__(self) -> str:
        """The message without secrets (``urls.redact``): it may quote a URL, or an error that echoes one."""
        from .urls import redact

        return redact(super().__str__())


class ConfigError(HarnessError, ValueError):
    """A setting that is out of range or unknown; the message names it and what is allowed."""


class RecordingError(HarnessError):
    """MLflow could not record a run (full disk, lost server, ...). Nothing was counted as done: the
    trials concerned were given back, and running the same command again resumes them."""
