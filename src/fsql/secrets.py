"""Secrets: which values are secret, and masking them in anything fsql shows or writes.

Three kinds of value are secret: environment variables whose name starts with
``FSQL_ENV_SECRET_`` (dbt's ``DBT_ENV_SECRET_`` rule), the ``password:`` of an online store, and
the password inside a connection URL (``redis://user:PASSWORD@host``). ``redact`` is the last line
of defence: the CLI error boundary, ``--json`` output and every HTTP error body pass through it,
so a secret quoted by a library's exception text is masked too.
"""

from __future__ import annotations

import json
import os
import re
from urllib.parse import unquote, urlsplit, urlunsplit

SECRET_ENV_PREFIX = "FSQL_ENV_SECRET_"
MASK = "***"

# The password part of the userinfo of any URL-like text: scheme://[user]:PASSWORD@
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)[^@\s]+(?=@)")

# Passwords read from the profile of this process (module state on purpose: a message can be
# raised far from the config that holds the secret, and the boundary must still mask it).
_known: set[str] = set()


def is_secret_env(name: str) -> bool:
    return name.startswith(SECRET_ENV_PREFIX)


def remember(value: str | None) -> None:
    """Mark ``value`` (a password read from the profile) as secret for ``redact``."""
    if value:
        _known.update({value, unquote(value)})


def url_password(url: str) -> str | None:
    """The password in ``url``'s userinfo, if any (as written, possibly %-quoted)."""
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def display_url(url: str, password: str | None = None) -> str:
    """``url`` with its password replaced by ``***`` (also shown when the password is given
    separately), e.g. ``redis://:***@host:6379/0``; safe to print and log."""
    parts = urlsplit(url)
    if parts.password is None and not password:
        return url
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{hostinfo}"))


def _secrets() -> list[str]:
    values = set(_known)
    values.update(v for k, v in os.environ.items() if is_secret_env(k) and v)
    # Longest first, so a secret containing another is masked whole; the JSON-escaped form too.
    escaped = {json.dumps(v)[1:-1] for v in values}
    return sorted(values | escaped, key=len, reverse=True)


def redact(text: str) -> str:
    """``text`` with every URL password and every known secret value replaced by ``***``."""
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    for secret in _secrets():
        text = text.replace(secret, MASK)
    return text
