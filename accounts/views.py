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

from accounts.models import ApiToken
from core.errors import ApplicationError
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

    @extend_schema(
        operation_id="auth_token",
        summary="Exchange a username and password for an API token",
        description="The token is shown once; send it as `Authorization: Token <token>` (or `Bearer`).",
        auth=[],
        request=InputSerializer,
        responses={200: inline_serializer(name="Token", fields={"token": serializers.CharField()}), 400: BAD_REQUEST},
        examples=[
            OpenApiExample(
                "Credentials", value={"username": "alice", "password": "s3cret", "name": "ci"}, request_only=True
            ),
            OpenApiExample("A new token", value={"token": "Vq3k...43 characters"}, response_only=True),
        ],
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = authenticate(request, username=data.validated_data["username"], password=data.validated_data["password"])
        if user is None:
            raise ApplicationError(
                "Unable to log in with the given username and password.",
                code="invalid_credentials",
            )
        _, raw = ApiToken.issue(user=user, name=data.validated_data.get("name", ""))
        return Response({"token": raw}, status=status.HTTP_200_OK)
