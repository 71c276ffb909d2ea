"""The memory REST API: one view per operation; each validates, calls a service or a
selector, and serializes the answer."""

from __future__ import annotations

import re

from django.conf import settings
from django.urls import reverse
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    extend_schema,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import ApplicationError
from core.fields import BoundedJSONObjectField, StrictCharField, StrictIntegerField
from core.json_policy import JSONPolicyError, json_loads
from core.openapi import page_of
from memory.bounds import MemoryWriteThrottle, request_text_check
from memory.models import DEFAULT_NAMESPACE
from memory.selectors import (
    SEARCH_MODES,
    memory_get,
    memory_get_for_write,
    memory_history,
    memory_list,
    memory_search,
)
from memory.services import NewMemory, memory_delete, memory_store_many, memory_update

MAX_TTL = 10 * 365 * 24 * 3600
METADATA_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}$")


EXAMPLE_MEMORY = {
    "id": "3f6a1c2e-5b7d-4e8f-9a0b-1c2d3e4f5a6b",
    "text": "The billing service retries card payments three times.",
    "namespace": "default",
    "metadata": {"topic": "billing"},
    "owner": "alice",
    "version": 1,
    "created_at": "2026-11-24T10:00:00Z",
    "updated_at": "2026-11-24T10:00:00Z",
    "expires_at": None,
}
EXAMPLE_STORE = {"text": EXAMPLE_MEMORY["text"], "namespace": "default", "metadata": {"topic": "billing"}, "ttl": 86400}


def _example(name: str, value, **kwargs) -> OpenApiExample:
    return OpenApiExample(name, value=value, response_only=True, **kwargs)


class MemoryOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    text = serializers.CharField()
    namespace = serializers.CharField()
    metadata = serializers.DictField()
    owner = serializers.CharField(source="owner.username")
    version = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)


class MemoryInputSerializer(serializers.Serializer):
    text = StrictCharField(max_length=settings.AGENTBUS_MEMORY_MAX_TEXT_CHARS, trim_whitespace=False)
    namespace = StrictCharField(required=False, default=DEFAULT_NAMESPACE, max_length=100)
    metadata = BoundedJSONObjectField(max_bytes=16 * 1024, required=False, default=dict)
    ttl = StrictIntegerField(required=False, allow_null=True, default=None, min_value=1, max_value=MAX_TTL)

    def validate_text(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("must not be blank")
        return value


def _json_object(request) -> dict:
    if not isinstance(request.data, dict):
        raise ApplicationError("The body must be a JSON object.", fields={"body": ["must be a JSON object"]})
    return request.data


def _new_memory(data: dict) -> NewMemory:
    return NewMemory(text=data["text"], namespace=data["namespace"], metadata=data["metadata"], ttl=data["ttl"])


class MemoryStoreView(APIView):
    """POST /memory/store: remember one text; answers 201 {"id"}."""

    throttle_classes = [*APIView.throttle_classes, MemoryWriteThrottle]  # memory/bounds.py

    @extend_schema(
        operation_id="memory_store",
        summary="Remember a text",
        description="`ttl` is in seconds; `namespace` defaults to `default` (private) unless it names a shared one.",
        request=MemoryInputSerializer,
        responses={201: inline_serializer(name="MemoryStored", fields={"id": serializers.UUIDField()})},
        examples=[
            OpenApiExample("A fact", value=EXAMPLE_STORE, request_only=True),
            _example("Stored", {"id": EXAMPLE_MEMORY["id"]}, status_codes=["201"]),
        ],
    )
    def post(self, request):
        data = MemoryInputSerializer(data=_json_object(request))
        data.is_valid(raise_exception=True)
        (memory,) = memory_store_many(owner=request.user, items=[_new_memory(data.validated_data)])
        return Response(
            {"id": str(memory.id)},
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("memory-detail", kwargs={"memory_id": memory.id})},
        )


class MemoryBatchStoreView(APIView):
    """POST /memory/batch: {"memories": [{text, namespace?, metadata?, ttl?}, ...]};
    all are stored or none; answers 201 {"ids"} in the same order."""

    throttle_classes = [*APIView.throttle_classes, MemoryWriteThrottle]  # memory/bounds.py

    class InputSerializer(serializers.Serializer):
        memories = serializers.ListField(
            child=MemoryInputSerializer(), min_length=1, max_length=settings.AGENTBUS_MEMORY_MAX_BATCH
        )

    @extend_schema(
        operation_id="memory_store_batch",
        summary="Remember many texts at once (all or none)",
        request=InputSerializer,
        responses={
            201: inline_serializer(
                name="MemoryBatchStored", fields={"ids": serializers.ListField(child=serializers.UUIDField())}
            )
        },
        examples=[
            OpenApiExample(
                "Two facts", value={"memories": [EXAMPLE_STORE, {"text": "Refunds take 5 days."}]}, request_only=True
            ),
            _example(
                "Stored", {"ids": [EXAMPLE_MEMORY["id"], "7b8c9d0e-1f2a-4b3c-8d4e-5f6a7b8c9d0e"]}, status_codes=["201"]
            ),
        ],
    )
    def post(self, request):
        data = self.InputSerializer(data=_json_object(request))
        data.is_valid(raise_exception=True)
        # Embedding runs in this request: its cost is capped by the text it carries.
        request_text_check(texts=[m["text"] for m in data.validated_data["memories"]], field="memories")
        memories = memory_store_many(
            owner=request.user, items=[_new_memory(item) for item in data.validated_data["memories"]]
        )
        return Response({"ids": [str(m.id) for m in memories]}, status=status.HTTP_201_CREATED)


def _metadata_filters(params) -> dict:
    """``metadata.<key>=<value>`` query parameters (values read as JSON when they parse,
    so ``metadata.year=2024`` matches the number and ``metadata.done=true`` the boolean;
    anything else is a string), plus ``filter=<JSON object>`` for exact typed values."""
    filters: dict = {}
    raw = params.get("filter")
    if raw is not None:
        try:
            parsed = json_loads(raw, root="filter")
        except JSONPolicyError as exc:
            raise ApplicationError(f"JSON refused: {exc}", fields={exc.path: [exc.message]}) from None
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise ApplicationError("filter must be a JSON object.", fields={"filter": ["must be a JSON object"]})
        filters.update(parsed)
    for name, value in params.items():
        if name.startswith("metadata."):
            key = name.removeprefix("metadata.")
            try:
                filters[key] = json_loads(value, root=name)
            except JSONPolicyError as exc:
                raise ApplicationError(f"JSON refused: {exc}", fields={exc.path: [exc.message]}) from None
            except ValueError:
                filters[key] = value
    for key, value in filters.items():
        if not METADATA_KEY.match(key):
            raise ApplicationError(
                f"Bad metadata key {key!r}.",
                fields={f"metadata.{key}": ["keys are 1-64 letters, digits, '_', '.', ':' or '-'"]},
            )
        if isinstance(value, (dict, list)):
            raise ApplicationError(
                f"metadata.{key}: filter by a string, number, boolean or null.",
                fields={f"metadata.{key}": ["must be a string, number, boolean or null"]},
            )
    return filters


class MemorySearchView(APIView):
    """GET /memory/search?q=&namespace=&k=&min_score=&mode=&metadata.<key>=: best first."""

    class FilterSerializer(serializers.Serializer):
        q = serializers.CharField(max_length=2000)
        namespace = serializers.CharField(required=False, max_length=100)
        k = serializers.IntegerField(required=False, default=10, min_value=1, max_value=100)
        min_score = serializers.FloatField(required=False, min_value=-1.0, max_value=1.0)
        mode = serializers.ChoiceField(choices=SEARCH_MODES, required=False, default="hybrid")

    @extend_schema_serializer(component_name="MemorySearchHit")
    class OutputSerializer(serializers.Serializer):
        id = serializers.UUIDField(source="memory.id")
        text = serializers.CharField(source="memory.text")
        score = serializers.FloatField()
        similarity = serializers.FloatField(allow_null=True)
        matched = serializers.ListField(child=serializers.CharField())
        metadata = serializers.DictField(source="memory.metadata")
        namespace = serializers.CharField(source="memory.namespace")
        created_at = serializers.DateTimeField(source="memory.created_at")
        expires_at = serializers.DateTimeField(source="memory.expires_at", allow_null=True)

    @extend_schema(
        operation_id="memory_search",
        summary="Search memory, best first",
        description=(
            "Hybrid by default: vector similarity (Chroma) fused with PostgreSQL full-text search by reciprocal "
            "rank. Filter by metadata with `metadata.<key>=<value>` (JSON-typed when it parses) or "
            "`filter=<JSON object>`. `min_score` is a minimum cosine similarity; keyword matches are kept."
        ),
        parameters=[
            FilterSerializer,
            OpenApiParameter("filter", str, description='A JSON object, e.g. {"topic": "billing"}.'),
        ],
        responses={200: inline_serializer(name="MemorySearchResults", fields={"results": OutputSerializer(many=True)})},
        examples=[
            _example(
                "One hit",
                {
                    "results": [
                        {
                            "id": EXAMPLE_MEMORY["id"],
                            "text": EXAMPLE_MEMORY["text"],
                            "score": 0.0328,
                            "similarity": 0.81,
                            "matched": ["vector", "keyword"],
                            "metadata": {"topic": "billing"},
                            "namespace": "default",
                            "created_at": "2026-11-24T10:00:00Z",
                            "expires_at": None,
                        }
                    ]
                },
            )
        ],
    )
    def get(self, request):
        params = self.FilterSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        hits = memory_search(
            user=request.user,
            query=params.validated_data["q"],
            namespace=params.validated_data.get("namespace"),
            k=params.validated_data["k"],
            min_score=params.validated_data.get("min_score"),
            filters=_metadata_filters(request.query_params),
            mode=params.validated_data["mode"],
        )
        return Response({"results": self.OutputSerializer(hits, many=True).data})


class MemoryListView(GenericAPIView):
    """GET /memory: the caller's memories (own and shared with them), newest first."""

    class FilterSerializer(serializers.Serializer):
        namespace = serializers.CharField(required=False, max_length=100)

    @extend_schema(
        operation_id="memory_list",
        summary="List the caller's memories, newest first (paginated)",
        parameters=[FilterSerializer, OpenApiParameter("page", int, description="Page number, from 1.")],
        responses={200: page_of("MemoryPage", MemoryOutputSerializer)},
        examples=[_example("A page", {"count": 1, "next": None, "previous": None, "results": [EXAMPLE_MEMORY]})],
    )
    def get(self, request):
        params = self.FilterSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        memories = memory_list(user=request.user, namespace=params.validated_data.get("namespace"))
        page = self.paginate_queryset(memories)
        return self.get_paginated_response(MemoryOutputSerializer(page, many=True).data)


class MemoryDetailView(APIView):
    """GET, PATCH ({text?, namespace?, metadata?, ttl?}) and DELETE one memory."""

    @extend_schema_serializer(component_name="MemoryPatch")
    class PatchSerializer(serializers.Serializer):
        text = StrictCharField(
            required=False, max_length=settings.AGENTBUS_MEMORY_MAX_TEXT_CHARS, trim_whitespace=False
        )
        namespace = StrictCharField(required=False, max_length=100)
        metadata = BoundedJSONObjectField(max_bytes=16 * 1024, required=False)
        ttl = StrictIntegerField(required=False, allow_null=True, min_value=1, max_value=MAX_TTL)

        def validate_text(self, value: str) -> str:
            if not value.strip():
                raise serializers.ValidationError("must not be blank")
            return value

    @extend_schema(
        operation_id="memory_get",
        summary="One memory",
        responses={200: MemoryOutputSerializer},
        examples=[_example("A memory", EXAMPLE_MEMORY)],
    )
    def get(self, request, memory_id):
        return Response(MemoryOutputSerializer(memory_get(user=request.user, memory_id=memory_id)).data)

    @extend_schema(
        operation_id="memory_update",
        summary="Change a memory (its history keeps every version)",
        request=PatchSerializer,
        responses={200: MemoryOutputSerializer},
        examples=[
            OpenApiExample(
                "New text", value={"text": "The billing service retries card payments five times."}, request_only=True
            ),
            _example(
                "Updated",
                {**EXAMPLE_MEMORY, "text": "The billing service retries card payments five times.", "version": 2},
            ),
        ],
    )
    def patch(self, request, memory_id):
        # Someone else's memory is a 404 whatever the body says: look it up first.
        memory = memory_get_for_write(user=request.user, memory_id=memory_id)
        data = self.PatchSerializer(data=_json_object(request))
        data.is_valid(raise_exception=True)
        if not data.validated_data:
            raise ApplicationError(
                "Nothing to change: send text, namespace, metadata or ttl.", fields={"body": ["no field to change"]}
            )
        memory = memory_update(memory=memory, actor=request.user, **data.validated_data)
        return Response(MemoryOutputSerializer(memory).data)

    @extend_schema(operation_id="memory_delete", summary="Delete a memory", responses={204: None})
    def delete(self, request, memory_id):
        memory_delete(memory=memory_get_for_write(user=request.user, memory_id=memory_id), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MemoryHistoryView(APIView):
    """GET /memory/{id}/history: every version of the memory, oldest first."""

    @extend_schema_serializer(component_name="MemoryVersion")
    class OutputSerializer(serializers.Serializer):
        version = serializers.IntegerField()
        action = serializers.CharField()
        text = serializers.CharField()
        namespace = serializers.CharField()
        metadata = serializers.DictField()
        expires_at = serializers.DateTimeField(allow_null=True)
        actor = serializers.CharField(source="actor.username", allow_null=True, default=None)
        at = serializers.DateTimeField()

    @extend_schema(
        operation_id="memory_history",
        summary="Every version of a memory, oldest first",
        responses={200: inline_serializer(name="MemoryHistory", fields={"history": OutputSerializer(many=True)})},
        examples=[
            _example(
                "Created, then edited",
                {
                    "history": [
                        {
                            "version": 1,
                            "action": "created",
                            "text": "retries three times",
                            "namespace": "default",
                            "metadata": {},
                            "expires_at": None,
                            "actor": "alice",
                            "at": "2026-11-24T10:00:00Z",
                        },
                        {
                            "version": 2,
                            "action": "updated",
                            "text": "retries five times",
                            "namespace": "default",
                            "metadata": {},
                            "expires_at": None,
                            "actor": "alice",
                            "at": "2026-11-24T11:00:00Z",
                        },
                    ]
                },
            )
        ],
    )
    def get(self, request, memory_id):
        memory = memory_get(user=request.user, memory_id=memory_id)
        return Response({"history": self.OutputSerializer(memory_history(memory=memory), many=True).data})
