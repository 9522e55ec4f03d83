"""Store URLs appear in messages, tags and summaries: never with the password a user put in them."""

import re

_PASSWORD = re.compile(r"(://[^:/@\s]+):[^\s/]*@")


def redact(text):
    return _PASSWORD.sub(r"\1:***@", str(text))
