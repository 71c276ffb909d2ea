from __future__ import annotations

from django.contrib.auth import authenticate
from drf_spectacular.utils import (
    OpenApiExample,
    extend_schema,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.tokens import token_issue
from core.errors import ApplicationError
from core.fields import StrictIntegerField
from core.openapi import BAD_REQUEST
from core.throttling import AnonRateThrottle


class TokenObtainView(APIView):
    """Exchange a username and password for a new API token (shown once)."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [AnonRateThrottle]

    @extend_schema_serializer(component_name="TokenRequest")
    class InputSerializer(serializers.Serializer):
        username = serializers.CharField(max_length=150)
        password = serializers.CharField(max_length=4096, trim_whitespace=False)
        name = serializers.CharField(max_length=100, required=False, allow_blank=True)
        # Seconds until the token stops working (at most a year); omitted: until revoked.
        expires_in = StrictIntegerField(required=False, min_value=60, max_value=365 * 24 * 3600)

    @extend_schema(
        operation_id="auth_token",
        summary="Exchange a username and password for an API token",
        description=(
            "The token is shown once; send it as `Authorization: Token <token>` (or `Bearer`). "
            "`name` labels it in `GET /auth/tokens`; `expires_in` (seconds) makes it expire."
        ),
        auth=[],
        request=InputSerializer,
        responses={
            200: inline_serializer(
                name="Token",
                fields={
                    "token": serializers.CharField(),
                    "id": serializers.IntegerField(),
                    "expires_at": serializers.DateTimeField(allow_null=True),
                },
            ),
            400: BAD_REQUEST,
        },
        examples=[
            OpenApiExample(
                "Credentials", value={"username": "alice", "password": "s3cret", "name": "ci"}, request_only=True
            ),
            OpenApiExample(
                "A new token",
                value={"token": "Vq3k...43 characters", "id": 7, "expires_at": None},
                response_only=True,
            ),
        ],
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        # Django's request, so that django-axes (accounts/lockout.py) flags a lock-out on it.
        user = authenticate(
            request._request, username=data.validated_data["username"], password=data.validated_data["password"]
        )
        if user is None:
            raise ApplicationError(
                "Unable to log in with the given username and password.",
                code="invalid_credentials",
            )
        token, raw = token_issue(
            user=user, name=data.validated_data.get("name", ""), expires_in=data.validated_data.get("expires_in")
        )
        return Response({"token": raw, "id": token.id, "expires_at": token.expires_at}, status=status.HTTP_200_OK)
