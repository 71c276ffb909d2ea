"""The OpenAPI reference: ``/schema`` (drf-spectacular) and ``/docs`` (Swagger UI).

Swagger UI's files come from drf-spectacular-sidecar and are served by the app's own
static files, so the docs work offline and behind a strict content policy. What every
view shares in the schema lives here: the one error shape and its usual responses.
Settings are in ``SPECTACULAR_SETTINGS`` (agentbus_site/settings.py).
"""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, inline_serializer
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework import serializers


class HashedTokenScheme(OpenApiAuthenticationExtension):
    """``Authorization: Token <key>`` (accounts.authentication), shown as an API key."""

    target_class = "accounts.authentication.HashedTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Token <key>` (or `Bearer <key>`), the key from `POST /auth/token`.",
        }


def paths_as_documented(result, generator, request, public):
    """Postprocessing hook: our paths work with or without a trailing slash (the URL
    patterns say ``/?``); the reference shows them as the contract writes them."""
    result["paths"] = {(path.rstrip("/") or "/"): item for path, item in result["paths"].items()}
    return result


ErrorSerializer = inline_serializer(
    name="Error",
    fields={
        "error": serializers.CharField(help_text="A stable, machine-readable code."),
        "detail": serializers.CharField(help_text="What is wrong, for a person."),
        "fields": serializers.DictField(
            child=serializers.ListField(child=serializers.CharField()),
            required=False,
            help_text="Dotted path into the request (or a header/parameter name) to its problems.",
        ),
    },
)


def page_of(name: str, serializer) -> object:
    """The schema of one page of a paginated list (core.pagination)."""
    from rest_framework import serializers

    return inline_serializer(
        name=name,
        fields={
            "count": serializers.IntegerField(),
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": serializer(many=True),
        },
    )


def error(description: str, *examples: OpenApiExample) -> OpenApiResponse:
    return OpenApiResponse(response=ErrorSerializer, description=description, examples=list(examples))


VALIDATION_EXAMPLE = OpenApiExample(
    "Invalid input",
    value={
        "error": "validation_error",
        "detail": "plan.tasks[1].agent: unknown agent 'nope'",
        "fields": {"plan.tasks[1].agent": ["unknown agent 'nope'"]},
    },
    response_only=True,
    status_codes=["400"],
)
UNAUTHENTICATED = error(
    "No or invalid credentials.",
    OpenApiExample(
        "Not authenticated",
        value={"error": "not_authenticated", "detail": "Authentication credentials were not provided."},
        response_only=True,
        status_codes=["401"],
    ),
)
NOT_FOUND = error(
    "No such object for this user (another user's object included).",
    OpenApiExample(
        "Not found",
        value={"error": "not_found", "detail": "Not found."},
        response_only=True,
        status_codes=["404"],
    ),
)
BAD_REQUEST = error("The input is invalid; `fields` says where.", VALIDATION_EXAMPLE)


class SchemaView(SpectacularAPIView):
    """The OpenAPI 3 schema; YAML by default, JSON with ``?format=json``."""


class DocsView(SpectacularSwaggerSplitView):
    """Swagger UI over ``/schema``, with every asset served by the app; the split view
    serves its start-up script as a file (``?script``), so no inline script needs the CSP."""

    url_name = "schema"
