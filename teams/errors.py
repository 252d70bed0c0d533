"""Errors of the teams app, each with a message a finance user can act on.

``ValueError`` subclasses, so a caller that only knows "bad input" can still catch them.
"""

from __future__ import annotations


class InvalidApiKeyRequest(ValueError):
    """An API key that cannot be created: no name saying what uses it, or an inactive team."""
