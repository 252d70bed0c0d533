"""The API's OpenAPI schema pieces (drf-spectacular): the error responses and the API-key scheme.

Kept apart from ``billing_site.api.auth``: DRF imports the authentication classes while it imports its
own views, and drf-spectacular imports DRF's views, so one module cannot hold both.
"""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse

from billing_site.api.errors import ErrorSerializer


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "billing_site.api.auth.ApiKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey", "in": "header", "name": "Authorization",
            "description": "A team's service key: `Api-Key <prefix>.<secret>` (created by finance in the admin).",
        }



class BillingAutoSchema(AutoSchema):
    """drf-spectacular's schema plus the error responses every endpoint can give, in the error shape."""

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        errors = {"400": "Bad input (the error names the field)", "401": "Not authenticated",
                  "403": "Not allowed", "404": "Not found (or another team's)", "429": "Too many requests"}
        if self.method == "POST":
            errors.update({"402": "Insufficient funds", "409": "Conflict (idempotency key, state)",
                           "413": "Body too large", "422": "Cannot be done (no price, nothing to bill…)"})
        elif self.method in ("PUT", "PATCH", "DELETE"):
            errors.update({"409": "Conflict"})
        for code, description in errors.items():
            if code not in responses:
                responses[code] = self._get_response_for_code(
                    OpenApiResponse(response=ErrorSerializer, description=description), code
                )
        return responses


