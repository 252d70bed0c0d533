"""Reads of plans and subscriptions: the current usage per meter and the upcoming invoice (nothing written)."""

from __future__ import annotations
