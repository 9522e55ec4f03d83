"""Secrets never reach what the harness prints or stores: messages, tags, the command line it records.

A password or token can sit in a URL (``user:PW@host``, ``?password=PW``, ``&token=...``), in a flag
that holds such a URL, or in the environment (``$PGPASSWORD``, ``$MLFLOW_TRACKING_PASSWORD``, the
password of ``$HARNESS_OPTUNA_STORAGE``, ...). ``redact`` is the one function every such text goes
through; it replaces each of them with ``***``.
"""

import os
import re
import sys
from collections.abc import Iterable
from urllib.parse import unquote, unquote_plus, urlsplit, urlunsplit

MASK = "***"
SECRET_VARIABLES = ("PGPASSWORD", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
"""Environment variables whose whole value is a secret."""
URL_VARIABLES = ("HARNESS_OPTUNA_STORAGE", "MLFLOW_TRACKING_URI")
"""Environment variables holding a URL, whose password and secret parameters are secrets."""
MIN_SECRET_LENGTH = 4
"""Known secrets shorter than this are hidden inside URLs only: replaced wherever they appear, two or
three characters would garble ordinary words in every line."""

_USERINFO = re.compile(r"(?P<head>[A-Za-z][\w+.-]*://[^:/@\s'\"]*):(?P<secret>[^\s'\"]*)@")
"""``scheme://user:PASSWORD@`` in a text; the password runs to the last ``@`` of the word (it may hold
one), so a host is hidden too rather than half a password shown."""
_VALUE_USERINFO = re.compile(r"[A-Za-z][\w+.-]*://[^:/@]*:(?P<secret>[^@]*)@")
"""The same in one value (a flag, a variable), read as SQLAlchemy reads it: spaces may be part of it."""
_SECRET_NAME = (
    r"[\w.-]*?(?:password|passwd|pwd|token|secret|api[_-]?key|access[_-]?key|private[_-]?key|credential|signature)"
    r"[\w.-]*"
)
_PARAMETER = re.compile(rf"(?P<head>(?<![\w.-]){_SECRET_NAME}=)(?P<secret>[^&;#\s'\"]*)", re.IGNORECASE)
"""``password=...``, ``sslpassword=...``, ``access_token=...``: in a query string or a libpq string.
Paths are not secrets: ``passfile``, ``sslkey``, ``sslcert`` stay readable."""


def redact(text: object, also: Iterable[str] = ()) -> str:
    """``text`` with every password, token and known secret (and those in ``also``) replaced by ``***``."""
    text = _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@", str(text))
    text = _PARAMETER.sub(lambda m: m["head"] + (MASK if m["secret"] else ""), text)
    for secret in sorted(_worth_hiding({*known_secrets(), *also}), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def secrets_in(value: str) -> set[str]:
    """The passwords and secret parameters of the URL in ``value`` (one flag or variable, so a password
    may hold spaces), as written and percent-decoded."""
    found = {match["secret"] for pattern in (_USERINFO, _VALUE_USERINFO) for match in pattern.finditer(value)}
    found |= {secret.split("@")[0] for secret in found}  # SQLAlchemy ends a password at its first @
    found |= {match["secret"] for match in _PARAMETER.finditer(value)}
    return {form for secret in found for form in (secret, unquote(secret), unquote_plus(secret)) if form}


def known_secrets() -> set[str]:
    """The secrets this process was given: in its environment, and in the URLs of its command line."""
    found = {os.environ.get(name, "") for name in SECRET_VARIABLES}
    for value in [*(os.environ.get(name, "") for name in URL_VARIABLES), *sys.argv]:
        found |= secrets_in(value)
    return found


def _worth_hiding(secrets: Iterable[str]) -> set[str]:
    return {s for s in secrets if len(s) >= MIN_SECRET_LENGTH and s != MASK}


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """(``url`` without its ``user:password@``, user, password), both percent-decoded; HTTP clients take
    credentials as a header, and a URL carrying them is read as a host name ``user:password@host``."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    return urlunsplit(parts._replace(netloc=host)), unquote(user), unquote(password) if ":" in userinfo else None
