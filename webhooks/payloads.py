"""Event payloads: the JSON shapes of the API, for objects of apps this one cannot import.

The webhooks app sits below the billing apps (they record events through it), so it cannot import
their serializers. Each app registers its own in its ``AppConfig.ready()``:
``payload_serializer_register(Invoice, InvoiceSerializer)``. :func:`payload_render` then turns a
model instance, or a dict of them and plain values, into JSON values, as the API would show them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

_SERIALIZERS: dict[type, Any] = {}


def payload_serializer_register(cls: type, serializer: Any) -> None:
    """Render instances of ``cls`` with ``serializer`` (a DRF serializer class, or any callable
    taking the instance and returning a dict)."""
    _SERIALIZERS[cls] = serializer


def _render(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _render(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_render(item) for item in value]
    for cls in type(value).__mro__:
        serializer = _SERIALIZERS.get(cls)
        if serializer is not None:
            rendered = serializer(value)
            return _render(rendered.data if hasattr(rendered, "data") else rendered)
    return value


def payload_render(value: Any) -> Any:
    """``value`` as JSON values: registered instances through their serializer, Decimals as
    strings (the API's ``COERCE_DECIMAL_TO_STRING``), datetimes in ISO 8601. A callable is called
    first (a payload that costs a query to build is built only when an endpoint wants it).

    Raises:
        TypeError: a value that is neither registered nor JSON-encodable.
    """
    if callable(value):
        value = value()
    return json.loads(json.dumps(_render(value), cls=DjangoJSONEncoder))
