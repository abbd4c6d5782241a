"""What an operator reads about a failure: one line, never a traceback, never a secret,
never a data value; and which database errors no retry can fix.

Every log line, run row, failure notice and CLI message that quotes an exception goes
through `describe`, which keeps its type and removes what may be data (quoted literals,
anything with a digit) unless the exception is a `SafeMessage` this package wrote; every
database URL shown goes through `redact_url`. `permanent_cause` is the one place that says
a database error is a set-up mistake (stop at once) rather than a passing one (retry).
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Iterable

from sqlalchemy import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

MAX_DESCRIBED_CHARS = 300

# scheme://user:PASSWORD@host - the password runs to the last '@' before the host (it may
# hold '@' or '/' itself): the shortest password after which comes a host with no '@'.
_URL_CREDENTIALS = re.compile(
    r"(?P<prefix>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s'\"]*:)\S*?@(?=[^@\s/?#'\"]*(?:[/?#\s'\"]|$))"
)
_KEY_VALUE_SECRET = re.compile(
    r"(?P<key>(?:password|passwd|pwd|secret|token)['\"]?)(?P<sep>\s*[=:]\s*)"
    r"(?P<value>'(?:[^'\\]|\\.)*'?|\"(?:[^\"\\]|\\.)*\"?|[^\s,;&'\"]+)",
    re.IGNORECASE,
)
# What may be a data value in an error message: a quoted literal (to its end, or to the
# end of the line when unterminated), a value after '=', and any token holding a digit
# (patient ids, lab values, dates). An apostrophe inside a word ("can't") is not a quote.
_QUOTED = re.compile(r"(?<![A-Za-z0-9])[bru]?(?P<q>['\"`])(?:(?!(?P=q)).)*(?:(?P=q)|$)")
_AFTER_EQUALS = re.compile(r"(?<==)\(?[^\s,;)]+\)?")
_WITH_DIGIT = re.compile(r"[\w.:/+-]*\d[\w.:/+-]*")
VALUE = "<value>"


class SafeMessage(Exception):
    """Mixin for an exception whose message this package wrote for the operator: it names
    settings, files, tables, counts, never a data value, so `describe` shows it whole."""


def scrub_secrets(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Mask passwords in URLs (whole, even one holding '@'), `password=...` pairs (quoted
    or not) and any of the given secrets.

    >>> scrub_secrets("postgresql+psycopg://u:p4ss@h/db password=x1 ok")
    'postgresql+psycopg://u:***@h/db password=*** ok'
    >>> scrub_secrets("postgresql://u:p@ss@h/db host=h password='p w@x' dbname=db")
    'postgresql://u:***@h/db host=h password=*** dbname=db'
    >>> scrub_secrets("login failed for hunter2", secrets=["hunter2"])
    'login failed for ***'
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = _URL_CREDENTIALS.sub(lambda m: f"{m['prefix']}***@", text)
    return _KEY_VALUE_SECRET.sub(lambda m: f"{m['key']}{m['sep']}***", text)


def scrub_values(text: str) -> str:
    """Remove from an error message what may be data: quoted literals, values after '=',
    and every token with a digit in it (ids, lab values, dates).

    >>> scrub_values("could not convert string to float: 'CART-1042 12,5'")
    'could not convert string to float: <value>'
    >>> scrub_values("Out of bounds timestamp: 2999-01-01 06:00:00, at position 3")
    'Out of bounds timestamp: <value> <value>, at position <value>'
    """
    text = _QUOTED.sub(VALUE, text)
    text = _AFTER_EQUALS.sub(VALUE, text)
    return _WITH_DIGIT.sub(VALUE, text)


def describe(
    exc: BaseException, secrets: Iterable[str | None] = (), *, values: bool = False
) -> str:
    """The exception's type and the first line of its message, secrets masked and, unless
    `values` (text known to hold no patient data: a connection's set-up, an SMTP reply) or
    the exception is a SafeMessage, data values removed. A database error names the
    driver's exception, not SQLAlchemy's wrapper; a file error its reason, not the file.

    >>> describe(KeyError("CART-1042"))
    'KeyError: <value>'
    >>> describe(ValueError("bad value 7.2\\nsecond line"), values=True)
    'ValueError: bad value 7.2'
    """
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        exc = exc.orig
    if isinstance(exc, OSError) and exc.strerror and not values:
        message = exc.strerror  # errno and file name left out
    else:
        lines = str(exc).strip().splitlines()
        message = lines[0] if lines else ""
    if not values and not isinstance(exc, SafeMessage):
        message = scrub_values(message)
    described = scrub_secrets(f"{type(exc).__name__}: {message}", secrets)
    return described[:MAX_DESCRIBED_CHARS]


def in_full(exc: BaseException, secrets: Iterable[str | None] = ()) -> str:
    """The whole traceback with every message as raised, secrets masked: for DEBUG logs
    only (README, "Bad data and failures")."""
    return scrub_secrets("".join(traceback.format_exception(exc)).rstrip(), secrets)


def redact_url(url: str) -> str:
    """A database URL with its password hidden, for logs and messages.

    >>> redact_url("postgresql://u:secret@h/db")
    'postgresql://u:***@h/db'
    """
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparseable URL is still never echoed back whole
        return "<unparseable database URL>"


# Set-up mistakes a database error can show, which no retry fixes.
NO_DATABASE = "no such database"
LOGIN_REFUSED = "login refused"
UNKNOWN_HOST = "unknown host"
CONNECTION_REFUSED = "connection refused"
CANNOT_OPEN = "cannot open the database file"  # SQLite: no such folder, or not writable

_PERMANENT_SQLSTATES = {  # when the driver has one (psycopg sets none while connecting)
    "3D000": NO_DATABASE,  # invalid_catalog_name
    "28P01": LOGIN_REFUSED,  # invalid_password
    "28000": LOGIN_REFUSED,  # invalid_authorization_specification
}
_PERMANENT_TEXT = [  # libpq's and SQLite's messages (English server messages)
    (re.compile(r'database "[^"]*" does not exist'), NO_DATABASE),
    (
        re.compile(
            r'password authentication failed|no password supplied|role "[^"]*" does not '
            r"exist|no pg_hba\.conf entry|(?:peer|ident) authentication failed"
        ),
        LOGIN_REFUSED,
    ),
    (
        re.compile(
            r"name or service not known|nodename nor servname|no address associated with "
            r"hostname|could not translate host name|failed to resolve host",
            re.IGNORECASE,
        ),
        UNKNOWN_HOST,
    ),
    (re.compile(r"connection refused", re.IGNORECASE), CONNECTION_REFUSED),
    (re.compile(r"unable to open database file"), CANNOT_OPEN),
]
_PASSING = re.compile(r"temporary failure in name resolution", re.IGNORECASE)


def permanent_cause(exc: BaseException) -> str | None:
    """Which set-up mistake a database error shows (NO_DATABASE, LOGIN_REFUSED, UNKNOWN_HOST,
    CONNECTION_REFUSED, CANNOT_OPEN), by its SQLSTATE or, while connecting, its message;
    None when it may pass (a dropped connection, a server starting or shutting down, a DNS
    server that did not answer, a lock).

    >>> permanent_cause(OSError('FATAL:  database "prcrs" does not exist'))
    'no such database'
    >>> permanent_cause(OSError("server closed the connection unexpectedly")) is None
    True
    """
    orig = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate in _PERMANENT_SQLSTATES:
        return _PERMANENT_SQLSTATES[sqlstate]
    text = str(orig)
    if _PASSING.search(text):
        return None
    for pattern, cause in _PERMANENT_TEXT:
        if pattern.search(text):
            return cause
    return None


def is_transient(exc: BaseException) -> bool:
    """A database error worth retrying: a lost connection or an operational condition that
    passes; never a set-up mistake (`permanent_cause`), nor a statement the database
    refuses (SQLite reports a missing table as an OperationalError too)."""
    if not isinstance(exc, DBAPIError) or permanent_cause(exc) is not None:
        return False
    if exc.connection_invalidated:
        return True
    return isinstance(exc, OperationalError) and "no such " not in str(exc.orig)
