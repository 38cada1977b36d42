"""Secrets out of messages: a URL as it may be shown to people and in logs."""

from __future__ import annotations

from urllib.parse import urlsplit


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (database and SMTP URLs
    are shown in messages; their passwords never are)."""
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:  # not a URL one can take apart: show none of it after the scheme
        return url.split("://", 1)[0] + "://…"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()
