"""The API's request parser: JSON with exact decimals, a bounded body, a bounded depth and clean text."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from django.conf import settings
from rest_framework import exceptions
from rest_framework.parsers import JSONParser

from billing_site.api.errors import RequestTooLarge
from billing_site.text import BAD_TEXT, bad_text_found

#: How deep objects and arrays may nest in a request body (the body itself is depth 1). The API's
#: deepest document, a batch record's metadata, needs 4; past the limit the body is refused (400).
MAX_JSON_DEPTH = 32


class LimitedJSONParser(JSONParser):
    """JSON with numbers as ``Decimal`` (never float) and a body no larger than
    ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (413 in the error shape, not a 500).

    DRF's parsers read the request stream directly, so Django's own size check on ``request.body``
    never runs for them; this one reads at most the limit plus one byte.

    Every path (single, batch, charge…) reads its body here, so the body is checked here once:

    - nesting deeper than :data:`MAX_JSON_DEPTH` is refused with 400 ``parse_error`` (however deep:
      a body nested 100,000 deep is refused, not a server error);
    - a string holding a NUL or an unpaired surrogate, as a value or as a key at any depth, is
      refused with 400 ``invalid_request`` naming its place in ``param``, e.g.
      ``records[3].metadata.note``.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        request = (parser_context or {}).get("request")
        if request is not None and limit is not None:
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > limit:
                raise RequestTooLarge(f"The request body is {length:,} bytes; the limit is {limit:,} bytes.")
        raw = stream.read(limit + 1) if limit is not None else stream.read()
        if limit is not None and len(raw) > limit:
            raise RequestTooLarge(f"The request body is larger than the limit of {limit:,} bytes.")
        try:
            text = raw.decode(settings.DEFAULT_CHARSET)
            data = json.loads(text, parse_float=Decimal, parse_constant=_no_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise exceptions.ParseError(f"JSON parse error - {exc}") from None
        except RecursionError:
            # The decoder recurses once per level: far past MAX_JSON_DEPTH, it gives up first.
            raise exceptions.ParseError(_too_deep()) from None
        json_check(data, text=text)
        return data


def json_check(data: Any, *, text: str | None = None) -> None:
    """Refuse a decoded JSON document nested past :data:`MAX_JSON_DEPTH` or holding bad text.

    Walks the document without recursion, so any depth is safe to check. ``text``, the JSON text
    ``data`` was decoded from, lets the walk skip the strings when it holds no ``\\u`` escape of a
    NUL or a surrogate: decoded JSON can hold such a character only through one (the decoder
    refuses raw control characters, and UTF-8 text cannot hold a surrogate), so only the nesting
    is then walked (a batch of 1,000 records: its 1,000 objects instead of its 10,000 values).

    Raises:
        rest_framework.exceptions.ParseError: nested deeper than :data:`MAX_JSON_DEPTH`.
        rest_framework.exceptions.ValidationError: a string value or key holds a NUL (``\\u0000``)
            or an unpaired surrogate (``\\ud800``…``\\udfff``); its detail is keyed by the field's
            path (``records[3].metadata.note``), which the error shape gives as ``param``.
    """
    if text is not None and not _BAD_TEXT_ESCAPE.search(text):
        _depth_check(data)
        return
    # A stack, not recursion; children pushed in reverse so the first bad field in reading order is named.
    stack: list[tuple[Any, str, int]] = [(data, "", 1)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            if BAD_TEXT.search(value):
                _refuse_text(path or "body", value)
            continue
        if isinstance(value, (dict, list)) and depth > MAX_JSON_DEPTH:
            raise exceptions.ParseError(_too_deep())
        if isinstance(value, dict):
            for key in value:
                if BAD_TEXT.search(key):
                    _refuse_text(f"{path}.{_shown(key)}" if path else _shown(key), key, is_key=True)
            stack.extend((item, f"{path}.{key}" if path else key, depth + 1) for key, item in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((value[i], f"{path}[{i}]", depth + 1) for i in range(len(value) - 1, -1, -1))


#: A JSON escape that decodes to a NUL or a surrogate (``\\u0000``, ``\\ud800``…``\\udfff``), or
#: an escaped backslash before such letters: either way the full walk decides.
_BAD_TEXT_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


def _depth_check(data: Any) -> None:
    """Refuse ``data`` nested deeper than :data:`MAX_JSON_DEPTH` (only its objects and arrays are walked)."""
    # Level by level; a level's containers are found by the set of their children's types (one C-level
    # pass each), so an object of plain values (a batch record without metadata) costs no Python loop.
    level = [data] if isinstance(data, (dict, list)) else []
    depth = 1
    while level:
        if depth > MAX_JSON_DEPTH:
            raise exceptions.ParseError(_too_deep())
        below = []
        for value in level:
            children = value.values() if isinstance(value, dict) else value
            if not _CONTAINERS.isdisjoint(set(map(type, children))):
                below.extend(item for item in children if isinstance(item, (dict, list)))
        level, depth = below, depth + 1


#: The types of the decoded JSON that nest (``json.loads`` makes no subclass of them).
_CONTAINERS = frozenset((dict, list))


def _too_deep() -> str:
    return f"JSON parse error - objects and arrays nest deeper than {MAX_JSON_DEPTH} levels"


def _shown(text: str) -> str:
    """``text`` with its NULs and surrogates written as ``\\uXXXX``, so a message can show it."""
    return BAD_TEXT.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _refuse_text(path: str, text: str, *, is_key: bool = False) -> None:
    found = bad_text_found(text)
    what = "a key" if is_key else "text"
    raise exceptions.ValidationError({path: [f"{what} may not contain {found}"]})


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number")
