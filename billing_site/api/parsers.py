"""The API's request parser: JSON with exact decimals and a bounded body."""

from __future__ import annotations

import json
from decimal import Decimal

from django.conf import settings
from rest_framework import exceptions
from rest_framework.parsers import JSONParser

from billing_site.api.errors import RequestTooLarge


class LimitedJSONParser(JSONParser):
    """JSON with numbers as ``Decimal`` (never float) and a body no larger than
    ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (413 in the error shape, not a 500).

    DRF's parsers read the request stream directly, so Django's own size check on ``request.body``
    never runs for them; this one reads at most the limit plus one byte.
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
            return json.loads(raw.decode(settings.DEFAULT_CHARSET), parse_float=Decimal, parse_constant=_no_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise exceptions.ParseError(f"JSON parse error - {exc}") from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number")
