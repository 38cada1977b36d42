"""Secrets out of messages: a URL as it may be shown to people and in logs."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# Query parameters that carry a secret: libpq takes `password` and
# `sslpassword` there as well as in the user part (`?password=…`).
_SECRET_PARAMETER = re.compile(r"(?i)(^|&)((?:ssl)?password)=[^&]*")


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (database and SMTP URLs
    are shown in messages; their passwords never are): in the user part and
    in the query string."""
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:  # not a URL one can take apart: show none of it after the scheme
        return url.split("://", 1)[0] + "://…"
    if parts.query:
        parts = parts._replace(query=_SECRET_PARAMETER.sub(r"\1\2=***", parts.query))
    if parts.password is None:
        return parts.geturl()
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()
