"""GET /auth/tokens (your tokens) and DELETE /auth/tokens/{id} (revoke one of yours)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.tokens import token_revoke, tokens_live


class TokenListView(APIView):
    @extend_schema_serializer(component_name="TokenInfo")
    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        name = serializers.CharField()
        prefix = serializers.CharField(help_text="The key's first characters, to tell tokens apart.")
        created_at = serializers.DateTimeField()
        expires_at = serializers.DateTimeField(allow_null=True)

    @extend_schema(
        operation_id="auth_tokens_list",
        summary="Your API tokens that still work (never their keys)",
        responses={200: OutputSerializer(many=True)},
        examples=[
            OpenApiExample(
                "Two tokens",
                value=[
                    {"id": 7, "name": "ci", "prefix": "Vq3kX9aB", "created_at": "2026-12-01T09:00:00Z",
                     "expires_at": "2027-01-01T09:00:00Z"},
                    {"id": 3, "name": "", "prefix": "p0Lm2c8Q", "created_at": "2026-11-02T10:00:00Z",
                     "expires_at": None},
                ],
                response_only=True,
            )
        ],
    )  # fmt: skip
    def get(self, request):
        return Response(self.OutputSerializer(tokens_live(user=request.user), many=True).data)


class TokenRevokeView(APIView):
    @extend_schema(
        operation_id="auth_tokens_revoke",
        summary="Revoke one of your tokens (another user's is a 404)",
        responses={204: None},
    )
    def delete(self, request, token_id: int):
        token_revoke(user=request.user, token_id=token_id)
        return Response(status=status.HTTP_204_NO_CONTENT)
