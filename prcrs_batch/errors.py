"""What an operator reads about a failure: one line, never a traceback, never a secret.

Every log line, run row, failure notice and CLI message that quotes an exception goes
through `describe`; every database URL shown goes through `redact_url`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sqlalchemy import make_url
from sqlalchemy.exc import DBAPIError

_URL_CREDENTIALS = re.compile(r"(?P<prefix>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)[^@\s]+@")
_KEY_VALUE_SECRET = re.compile(
    r"(?P<key>password|passwd|pwd|secret|token)(?P<sep>\s*[=:]\s*)(?P<value>[^\s,;&'\"]+)",
    re.IGNORECASE,
)


def scrub_secrets(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Mask passwords in URLs, `password=...` pairs and any of the given secrets.

    >>> scrub_secrets("postgresql+psycopg://u:p4ss@h/db password=x1 ok")
    'postgresql+psycopg://u:***@h/db password=*** ok'
    >>> scrub_secrets("login failed for hunter2", secrets=["hunter2"])
    'login failed for ***'
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = _URL_CREDENTIALS.sub(lambda m: f"{m['prefix']}***@", text)
    return _KEY_VALUE_SECRET.sub(lambda m: f"{m['key']}{m['sep']}***", text)


def describe(exc: BaseException, secrets: Iterable[str | None] = ()) -> str:
    """The exception's type and the first line of its message, secrets masked.

    A database error names the driver's exception, not SQLAlchemy's wrapper.

    >>> describe(ValueError("bad value\\nsecond line"))
    'ValueError: bad value'
    """
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        exc = exc.orig
    lines = str(exc).strip().splitlines()
    return scrub_secrets(f"{type(exc).__name__}: {lines[0] if lines else ''}", secrets)


def redact_url(url: str) -> str:
    """A database URL with its password hidden, for logs and messages.

    >>> redact_url("postgresql://u:secret@h/db")
    'postgresql://u:***@h/db'
    """
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparseable URL is still never echoed back whole
        return "<unparseable database URL>"
