"""`cadence serve`: the HTTP API (``/api/v1``) over the application layer
(:mod:`cadence.service`), for tools that are not written in Python.

The web layer parses requests, checks who is asking, and renders answers;
what may be done, and how, is decided by the application layer, the same
one the command line uses.
"""

from cadence.server.app import create_app

__all__ = ["create_app"]
