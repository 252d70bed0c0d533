"""The API's OpenAPI schema pieces (drf-spectacular): the error responses and the API-key scheme.

Kept apart from ``billing_site.api.auth``: DRF imports the authentication classes while it imports its
own views, and drf-spectacular imports DRF's views, so one module cannot hold both.
"""

from drf_spectacular.drainage import warn
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import is_list_serializer
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

from billing_site.api.errors import ErrorSerializer
from billing_site.api.fields import (
    ID_MAX,
    StrictPrimaryKeyRelatedField,
    StrictSerializerMixin,
    decimal_bounds_unsaid,
    decimal_pattern,
)


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "billing_site.api.auth.ApiKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey", "in": "header", "name": "Authorization",
            "description": "A team's service key: `Api-Key <prefix>.<secret>` (created by finance in the admin).",
        }



#: Text that is not blank once DRF trims it (``str.strip``): a character other than those
#: ``str.isspace`` calls space. Spelled out, as ``\S`` differs between Python and ECMA regexes
#: (``\x1c``-``\x1f`` and ``\x85`` are space to Python only).
NOT_BLANK = (r"[^\t\n\u000b\u000c\r\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f"
             r"\u205f\u3000]")


class BillingAutoSchema(AutoSchema):
    """drf-spectacular's schema plus the error responses every endpoint can give, in the error shape,
    and the limits the API enforces that drf-spectacular leaves out: a list's ``minItems``/``maxItems``
    (``allow_empty=False``, ``max_length``), a decimal string that needs a digit, and no unknown
    field in a request body (``additionalProperties: false``, as ``StrictSerializerMixin`` refuses)."""

    def _map_basic_serializer(self, serializer, direction):
        schema = super()._map_basic_serializer(serializer, direction)
        if direction == "request" and isinstance(serializer, StrictSerializerMixin):
            schema["additionalProperties"] = False  # an unknown field is refused (400), not ignored
        if direction == "request":
            for name, prop in schema.get("properties", {}).items():
                field = serializer.fields.get(name)
                if (isinstance(field, serializers.CharField) and field.trim_whitespace and not field.allow_blank
                        and prop.get("type") == "string" and "pattern" not in prop):
                    prop["pattern"] = NOT_BLANK  # DRF trims the spaces, so "  " is blank: refused (400)
        return schema

    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if schema is None:
            return schema
        if is_list_serializer(field) or isinstance(field, serializers.ListField):
            if not getattr(field, "allow_empty", True):
                schema.setdefault("minItems", 1)
            if getattr(field, "min_length", None) is not None:
                schema["minItems"] = field.min_length
            if getattr(field, "max_length", None) is not None:
                schema["maxItems"] = field.max_length
        if isinstance(field, serializers.DecimalField) and "pattern" in schema:
            # drf-spectacular's ``^-?\d{0,W}(?:\.\d{0,D})?$`` also matches "" and "-", which the API
            # refuses; the API holds a decimal string to exactly this pattern (StrictSerializerMixin).
            schema["pattern"] = decimal_pattern(field) or schema["pattern"]
            for bound in decimal_bounds_unsaid(field) if direction == "request" else ():
                warn(f"{field.parent.__class__.__name__}.{field.field_name}: {bound}: the schema cannot say it")
        if isinstance(field, StrictPrimaryKeyRelatedField):
            schema.update(minimum=1, maximum=ID_MAX)  # a bigint key; anything else is refused (400)
        return schema

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        errors = {"400": "Bad input (the error names the field)", "401": "Not authenticated",
                  "403": "Not allowed", "404": "Not found (or another team's)", "429": "Too many requests"}
        errors["422"] = "Well-formed but cannot be done (an end before its start, no team named, no price…)"
        if self.method == "POST":
            errors.update({"402": "Insufficient funds", "409": "Conflict (idempotency key, state)",
                           "413": "Body too large"})
        elif self.method in ("PUT", "PATCH", "DELETE"):
            errors.update({"409": "Conflict"})
        for code, description in errors.items():
            if code not in responses:
                responses[code] = self._get_response_for_code(
                    OpenApiResponse(response=ErrorSerializer, description=description), code
                )
        return responses


