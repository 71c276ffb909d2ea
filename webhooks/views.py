"""The webhooks REST API: subscriptions, their delivery log, redelivery by hand."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import ApplicationError
from core.fields import StrictBooleanField, StrictCharField
from core.openapi import BAD_REQUEST, NOT_FOUND, UNAUTHENTICATED, page_of
from webhooks.models import DeliveryStatus
from webhooks.selectors import webhook_deliveries, webhook_delivery_get, webhook_get, webhook_list
from webhooks.serializers import EventsField, WebhookURLField
from webhooks.services import webhook_create, webhook_delete, webhook_delivery_redeliver, webhook_update


class WebhookInputSerializer(serializers.Serializer):
    url = WebhookURLField()
    events = EventsField()
    secret = StrictCharField(required=False, allow_blank=True, min_length=0, max_length=200, default="")
    description = StrictCharField(required=False, allow_blank=True, max_length=200, default="")
    active = StrictBooleanField(required=False, default=True)


class WebhookOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    owner = serializers.CharField(source="owner.username")
    url = serializers.CharField()
    events = serializers.ListField(child=serializers.CharField())
    description = serializers.CharField()
    active = serializers.BooleanField()
    created_at = serializers.DateTimeField()


class WebhookCreatedSerializer(WebhookOutputSerializer):
    """The answer to POST /webhooks: the only one that shows the secret."""

    secret = serializers.CharField()


class DeliveryOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    event = serializers.CharField()
    job = serializers.UUIDField(source="job_id", allow_null=True)
    status = serializers.CharField()
    attempts = serializers.IntegerField()
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    last_status_code = serializers.IntegerField(allow_null=True)
    last_error = serializers.CharField()
    created_at = serializers.DateTimeField()
    delivered_at = serializers.DateTimeField(allow_null=True)
    payload = serializers.JSONField()


EXAMPLE_WEBHOOK = {
    "id": "9a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d",
    "owner": "alice",
    "url": "https://hooks.example.com/agentbus",
    "events": ["job.finished", "task.failed"],
    "description": "",
    "active": True,
    "created_at": "2026-12-02T08:00:00+00:00",
}
EXAMPLE_DELIVERY = {
    "id": "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9",
    "event": "job.finished",
    "job": "6f1c2b1e-8a4d-4e55-9d1a-3b2f1c0d9e8f",
    "status": "succeeded",
    "attempts": 2,
    "next_attempt_at": None,
    "last_status_code": 204,
    "last_error": "",
    "created_at": "2026-12-02T08:01:00+00:00",
    "delivered_at": "2026-12-02T08:01:12+00:00",
    "payload": {"event": "job.finished", "type": "job.status", "status": "succeeded", "seq": 6},
}


def _example(value: dict, code: str = "200") -> list[OpenApiExample]:
    return [OpenApiExample("Example", value=value, response_only=True, status_codes=[code])]


def _body(request) -> dict:
    if not isinstance(request.data, dict):
        raise ApplicationError("The body must be a JSON object.", fields={"body": ["must be a JSON object"]})
    return request.data


class WebhookListView(GenericAPIView):
    @extend_schema(
        operation_id="webhooks_list",
        summary="List the caller's webhook subscriptions",
        responses={200: page_of("WebhookPage", WebhookOutputSerializer), 401: UNAUTHENTICATED},
        examples=_example({"count": 1, "next": None, "previous": None, "results": [EXAMPLE_WEBHOOK]}),
    )
    def get(self, request):
        page = self.paginate_queryset(webhook_list(user=request.user))
        return self.get_paginated_response(WebhookOutputSerializer(page, many=True).data)

    @extend_schema(
        operation_id="webhooks_create",
        summary="Subscribe a URL to events of the caller's jobs",
        description=(
            "Events: job.finished, job.status, task.failed, review.opened. Each delivery is a POST signed with "
            '`X-Agentbus-Signature: sha256=HMAC(secret, "<timestamp>.<delivery id>.<body>")`; the secret '
            "(made for you when not given) is shown in this answer only."
        ),
        request=WebhookInputSerializer,
        responses={201: WebhookCreatedSerializer, 400: BAD_REQUEST, 401: UNAUTHENTICATED},
        examples=_example({**EXAMPLE_WEBHOOK, "secret": "kq3...generated"}, "201"),
    )
    def post(self, request):
        data = WebhookInputSerializer(data=_body(request))
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        active = fields.pop("active")
        sub = webhook_create(owner=request.user, **fields)
        if not active:
            sub = webhook_update(subscription=sub, changes={"active": False})
        return Response(WebhookCreatedSerializer(sub).data, status=status.HTTP_201_CREATED)


class WebhookDetailView(APIView):
    @extend_schema(
        operation_id="webhooks_retrieve",
        summary="A webhook subscription",
        responses={200: WebhookOutputSerializer, 401: UNAUTHENTICATED, 404: NOT_FOUND},
        examples=_example(EXAMPLE_WEBHOOK),
    )
    def get(self, request, webhook_id):
        return Response(WebhookOutputSerializer(webhook_get(user=request.user, webhook_id=webhook_id)).data)

    @extend_schema(
        operation_id="webhooks_update",
        summary="Change a webhook subscription",
        request=WebhookInputSerializer(partial=True),
        responses={200: WebhookOutputSerializer, 400: BAD_REQUEST, 401: UNAUTHENTICATED, 404: NOT_FOUND},
        examples=_example(EXAMPLE_WEBHOOK),
    )
    def patch(self, request, webhook_id):
        sub = webhook_get(user=request.user, webhook_id=webhook_id)
        body = _body(request)
        data = WebhookInputSerializer(data=body, partial=True)
        data.is_valid(raise_exception=True)
        changes = {k: v for k, v in data.validated_data.items() if k in body}
        if changes.get("secret") == "":
            raise ApplicationError("secret: must not be empty", fields={"secret": ["must not be empty"]})
        return Response(WebhookOutputSerializer(webhook_update(subscription=sub, changes=changes)).data)

    @extend_schema(
        operation_id="webhooks_delete",
        summary="Delete a webhook subscription and its delivery log",
        responses={204: OpenApiResponse(description="Deleted."), 401: UNAUTHENTICATED, 404: NOT_FOUND},
    )
    def delete(self, request, webhook_id):
        webhook_delete(subscription=webhook_get(user=request.user, webhook_id=webhook_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookDeliveriesView(GenericAPIView):
    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=DeliveryStatus.values, required=False)

    @extend_schema(
        operation_id="webhooks_deliveries",
        summary="A subscription's delivery log, newest first",
        parameters=[FilterSerializer],
        responses={
            200: page_of("DeliveryPage", DeliveryOutputSerializer),
            400: BAD_REQUEST,
            401: UNAUTHENTICATED,
            404: NOT_FOUND,
        },
        examples=_example({"count": 1, "next": None, "previous": None, "results": [EXAMPLE_DELIVERY]}),
    )
    def get(self, request, webhook_id):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        sub = webhook_get(user=request.user, webhook_id=webhook_id)
        page = self.paginate_queryset(webhook_deliveries(subscription=sub, status=filters.validated_data.get("status")))
        return self.get_paginated_response(DeliveryOutputSerializer(page, many=True).data)


class WebhookRedeliverView(APIView):
    @extend_schema(
        operation_id="webhooks_redeliver",
        summary="Send a delivery again",
        request=None,
        responses={202: DeliveryOutputSerializer, 401: UNAUTHENTICATED, 404: NOT_FOUND},
        examples=_example({**EXAMPLE_DELIVERY, "status": "pending", "attempts": 0}, "202"),
    )
    def post(self, request, webhook_id, delivery_id):
        sub = webhook_get(user=request.user, webhook_id=webhook_id)
        delivery = webhook_delivery_redeliver(delivery=webhook_delivery_get(subscription=sub, delivery_id=delivery_id))
        return Response(DeliveryOutputSerializer(delivery).data, status=status.HTTP_202_ACCEPTED)
