"""Text PostgreSQL cannot store: a NUL, or a UTF-16 surrogate left alone by a decoder.

PostgreSQL's ``text`` and ``jsonb`` refuse ``\\u0000``, and a lone surrogate (``\\ud800``) cannot be
written as UTF-8. Every way text comes in checks for them first, so the error names the field
instead of the database failing on the write: the API's JSON bodies (``billing_site.api.parsers``),
the admin's JSON fields (``billing_site.fields.validate_storable_json``), the FOCUS import.
"""

from __future__ import annotations

import re
from typing import Any

#: A NUL or a surrogate. A ``\\ud83d\\ude00`` pair decodes to one character, so any surrogate left
#: in a decoded ``str`` is unpaired.
BAD_TEXT = re.compile("[\x00\ud800-\udfff]")


def bad_text_found(text: str) -> str:
    """What is wrong with ``text``, for a message: ``\\u0000 (NUL)`` or ``an unpaired surrogate``."""
    return "\\u0000 (NUL)" if "\x00" in text else "an unpaired surrogate"


def bad_text_path(value: Any) -> str | None:
    """The place (``tags.team``, ``[2]``) of the first string or key in ``value`` holding bad text,
    or ``None``. Walks nested dicts and lists without recursion, so any depth is safe."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if BAD_TEXT.search(item):
                return path or "value"
        elif isinstance(item, dict):
            for key in item:
                if isinstance(key, str) and BAD_TEXT.search(key):
                    return f"{path}.{key!r}" if path else repr(key)
            stack.extend((v, f"{path}.{k}" if path else str(k)) for k, v in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((item[i], f"{path}[{i}]") for i in range(len(item) - 1, -1, -1))
    return None
