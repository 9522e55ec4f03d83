"""Errors the CLI turns into one line and exit status 2."""


class HarnessError(Exception):
    """Bad input from the user: a flag, a config file, a data file or a run id."""


class ConfigError(HarnessError, ValueError):
    """A setting that is out of range or unknown; the message names it and what is allowed."""
