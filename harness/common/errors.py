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


class DiskFullError(RecordingError):
    """The disk a store is on is full. Not bad input: exit status 1, as any failure the harness could
    not prevent; nothing was counted as done that is not recorded."""


FULL_DISK = ("No space left on device", "database or disk is full", "Disk quota exceeded")
"""What a full disk says through sqlite, the file system and MLflow's artifact writes."""


def disk_full_message(folder, detail):
    return (
        f"the disk holding {folder} is full ({detail[:200]}); nothing was counted as done that is not recorded: "
        "free some space and run the same command again"
    )


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP (a process manager, a closed terminal), raised where Ctrl-C raises
    KeyboardInterrupt, so every ``finally`` and context manager cleans up as it does on Ctrl-C.
    Exit status 128 + the signal's number (143 for SIGTERM)."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum
