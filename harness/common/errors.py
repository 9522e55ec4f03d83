"""Errors the CLI turns into one line and a non-zero exit status: ``HarnessError`` is bad input (exit 2:
change the command, the file or the store it names), ``RunTimeFailure`` a failure while the command ran
(exit 1: the input was fine; run the same command again once the cause is gone). ``cli.main`` alone maps
them to exit codes."""


class HarnessError(Exception):
    """Bad input from the user (a flag, a study or config file, a data file, a run id, an export) or a store
    that cannot be used as it is; the message says which and what to do. Exit status 2."""

    def __str__(self) -> str:
        """The message without secrets (``urls.redact``): it may quote a URL, or an error that echoes one.
        At most ``MESSAGE_LIMIT`` characters: a message is one line, whatever value it quotes."""
        from .urls import redact

        text = printable(redact(super().__str__()))
        return text if len(text) <= MESSAGE_LIMIT else f"{text[: MESSAGE_LIMIT - 20]}... (message cut)"


MESSAGE_LIMIT = 2000
BIDI = {*map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A))}
"""Characters that reorder the text shown after them (a name from a file could hide what follows)."""


def printable(text: str) -> str:
    """``text`` with every control character (C0, DEL, C1: a newline, a terminal escape) and bidi
    override escaped as Python writes it: a message quotes names from files others wrote (an export, a
    weights file), and what it prints must stay one line that the terminal shows as it is."""
    import unicodedata

    if text.isprintable():
        return text
    return "".join(repr(c)[1:-1] if c in BIDI or unicodedata.category(c) == "Cc" else c for c in text)


def shown(value: object) -> str:
    """A value as an error quotes it: its repr, cut short (a list of 100,000 values, a string of a megabyte,
    arrays nested 100,000 deep are each said in a few dozen characters)."""
    import reprlib

    short = reprlib.Repr()
    short.maxlist = short.maxtuple = short.maxdict = short.maxset = 8
    short.maxstring = short.maxother = 120
    short.maxlevel = 3
    try:
        return short.repr(value)
    except RecursionError:
        return f"<a {type(value).__name__} nested too deeply to show>"


class ConfigError(HarnessError, ValueError):
    """A setting that is out of range or unknown; the message names it and what is allowed."""


class RunTimeFailure(HarnessError):
    """A failure while the command ran that its input did not cause: a store or server lost or unusable
    mid-run, a full disk, a worker that died, training that failed until the command stopped. Exit status 1;
    nothing was counted as done that is not recorded, so running the same command again resumes."""


class RecordingError(RunTimeFailure):
    """MLflow could not record a run (full disk, lost server, ...). Nothing was counted as done: the
    trials concerned were given back, and running the same command again resumes them."""


class DiskFullError(RecordingError):
    """The disk a store is on is full."""


KINDS: dict[str, type[HarnessError]] = {
    "harness": HarnessError,
    "failure": RunTimeFailure,
    "recording": RecordingError,
    "disk": DiskFullError,
}
"""An error's kind as it crosses a process boundary (a worker, the recorder) as (kind, message)."""


def kind_of(exc: HarnessError) -> str:
    """The kind of ``exc`` in ``KINDS``: the most specific class it is an instance of."""
    return next(kind for kind, cls in reversed(KINDS.items()) if isinstance(exc, cls))


def from_kind(kind: str, message: str) -> HarnessError:
    """The error another process sent as (kind, message), of the same kind (an unknown one is a failure)."""
    return KINDS.get(kind, RunTimeFailure)(message)


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
