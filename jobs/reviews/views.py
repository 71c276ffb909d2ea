"""The reviews REST API: list, read, decide, claim and release review gates."""

from __future__ import annotations

from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    extend_schema,
    extend_schema_serializer,
)
from rest_framework import serializers
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from core.fields import BoundedJSONObjectField, StrictCharField
from core.openapi import BAD_REQUEST, NOT_FOUND, UNAUTHENTICATED, error, page_of
from jobs.models import ReviewDecision, ReviewKind, ReviewStatus
from jobs.reviews.decisions import review_claim, review_decide, review_release
from jobs.reviews.selectors import (
    review_diff,
    review_get,
    review_history,
    review_list,
    review_upstream,
)


class ReviewOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    kind = serializers.CharField()
    status = serializers.CharField()
    job = serializers.UUIDField(source="job_id")
    requirements = serializers.CharField(source="job.requirements")
    task = serializers.UUIDField(source="task_id", allow_null=True)
    task_key = serializers.CharField(source="task.key", allow_null=True, default=None)
    agent = serializers.CharField(source="task.agent", allow_null=True, default=None)
    attempt = serializers.IntegerField()
    assignee = serializers.CharField(source="assignee.username", allow_null=True, default=None)
    group = serializers.CharField(source="reviewer_group.name", allow_null=True, default=None)
    claimed_by = serializers.CharField(source="claimed_by.username", allow_null=True, default=None)
    claimed_at = serializers.DateTimeField(allow_null=True)
    deadline = serializers.DateTimeField(allow_null=True)
    default_outcome = serializers.CharField()
    proposed = serializers.JSONField()
    decision = serializers.CharField()
    decided_value = serializers.JSONField()
    comment = serializers.CharField()
    decided_by = serializers.CharField(source="decided_by.username", allow_null=True, default=None)
    decided_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()


class ReviewActionOutputSerializer(serializers.Serializer):
    action = serializers.CharField()
    actor = serializers.CharField(source="actor.username", allow_null=True, default=None)
    decision = serializers.CharField()
    comment = serializers.CharField()
    before = serializers.JSONField()
    after = serializers.JSONField()
    at = serializers.DateTimeField()


class ReviewDetailOutputSerializer(ReviewOutputSerializer):
    """GET /reviews/{id}: the review, what the reviewer needs to decide, its history."""

    task_input = serializers.JSONField(allow_null=True)
    upstream = serializers.DictField(child=serializers.JSONField(), help_text="Outputs of the task's dependencies.")
    diff = serializers.CharField(help_text="Unified diff of the proposed and the edited value (edits only).")
    history = ReviewActionOutputSerializer(many=True)


EXAMPLE_REVIEW = {
    "id": "8f9e3c57-8a51-4d0e-9f0e-5b8c1d2a7e11",
    "kind": "after",
    "status": "pending",
    "job": "0b7c9a52-2f7e-4c3e-8d55-9a6f1e0c4b21",
    "requirements": "Write the release notes for 2.0",
    "task": "3c1d2e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
    "task_key": "draft",
    "agent": "writer",
    "attempt": 1,
    "assignee": None,
    "group": "editors",
    "claimed_by": None,
    "claimed_at": None,
    "deadline": "2026-11-25T12:00:00Z",
    "default_outcome": "reject",
    "proposed": {"text": "2.0 is out."},
    "decision": "",
    "decided_value": None,
    "comment": "",
    "decided_by": None,
    "decided_at": None,
    "created_at": "2026-11-24T12:00:00Z",
}
EXAMPLE_REVIEW_DETAIL = {
    **EXAMPLE_REVIEW,
    "task_input": {"topic": "release notes"},
    "upstream": {"research": {"sources": ["changelog"]}},
    "diff": "",
    "history": [
        {
            "action": "opened",
            "actor": None,
            "decision": "",
            "comment": "",
            "before": None,
            "after": {"text": "2.0 is out."},
            "at": "2026-11-24T12:00:00Z",
        }
    ],
}
CONFLICT = error(
    "Already decided, or claimed by someone else.",
    OpenApiExample(
        "Already decided",
        value={"error": "review_already_decided", "detail": "This review was already decided (approve by alice)."},
        response_only=True,
        status_codes=["409"],
    ),
)


def _review_detail(review) -> dict:
    body = ReviewOutputSerializer(review).data
    body["task_input"] = review.task.input if review.task else None
    body["upstream"] = review_upstream(review=review)
    body["diff"] = review_diff(review=review)
    body["history"] = ReviewActionOutputSerializer(review_history(review=review), many=True).data
    return body


class ReviewListView(GenericAPIView):
    """GET: the reviews the caller may decide, newest first (?status=pending&kind=&job=)."""

    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=ReviewStatus.values, required=False)
        kind = serializers.ChoiceField(choices=ReviewKind.values, required=False)
        job = serializers.UUIDField(required=False)

    @extend_schema(
        operation_id="reviews_list",
        summary="Reviews the caller may decide",
        description=(
            "Review gates of the caller's jobs, those assigned to the caller, and those of the caller's "
            "reviewer groups (staff: all), newest first, paginated. `?status=pending` is the inbox."
        ),
        parameters=[FilterSerializer, OpenApiParameter("page", int, description="Page number, from 1.")],
        responses={
            200: page_of("ReviewPage", ReviewOutputSerializer),
            400: BAD_REQUEST,
            401: UNAUTHENTICATED,
        },
        examples=[
            OpenApiExample(
                "The inbox",
                value={"count": 1, "next": None, "previous": None, "results": [EXAMPLE_REVIEW]},
                response_only=True,
            )
        ],
    )
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
        reviews = review_list(
            user=request.user, status=data.get("status"), kind=data.get("kind"), job_id=data.get("job")
        )
        page = self.paginate_queryset(reviews)
        return self.get_paginated_response(ReviewOutputSerializer(page, many=True).data)


class ReviewDetailView(APIView):
    @extend_schema(
        operation_id="reviews_retrieve",
        summary="A review with what it needs decided and its history",
        responses={200: ReviewDetailOutputSerializer, 401: UNAUTHENTICATED, 404: NOT_FOUND},
        examples=[OpenApiExample("An output waiting for review", value=EXAMPLE_REVIEW_DETAIL, response_only=True)],
    )
    def get(self, request, review_id):
        return Response(_review_detail(review_get(user=request.user, review_id=review_id)))


class ReviewDecisionView(APIView):
    """POST ``{"decision": "approve"|"edit"|"reject"|"respond", "comment"?, "output"?,
    "input"?, "plan"?, "answer"?}``. An edit carries the new ``input`` (before), ``output``
    (after) or ``plan`` (plan review); respond carries the ``answer``."""

    @extend_schema_serializer(component_name="ReviewDecision")
    class InputSerializer(serializers.Serializer):
        decision = serializers.ChoiceField(
            choices=[ReviewDecision.APPROVE, ReviewDecision.EDIT, ReviewDecision.REJECT, ReviewDecision.RESPOND]
        )
        comment = StrictCharField(required=False, allow_blank=True, default="", max_length=10_000)
        output = serializers.JSONField(required=False)
        input = BoundedJSONObjectField(max_bytes=256 * 1024, required=False)
        plan = serializers.JSONField(required=False)
        answer = serializers.JSONField(required=False)

    @extend_schema(
        operation_id="reviews_decide",
        summary="Decide a review",
        description=(
            "approve; edit (`input` for a before-gate, `output` for an after-gate, `plan` for a plan review); "
            "reject (the `comment` is the feedback: an output's task runs again with it, a plan or an input "
            "fails the job or task); respond (`answer` to an agent's question, one of its options if it gave "
            "some). A review already decided, or claimed by someone else, is a 409."
        ),
        request=InputSerializer,
        responses={
            200: ReviewDetailOutputSerializer,
            400: BAD_REQUEST,
            401: UNAUTHENTICATED,
            404: NOT_FOUND,
            409: CONFLICT,
        },
        examples=[
            OpenApiExample("Approve", value={"decision": "approve", "comment": "Looks right"}, request_only=True),
            OpenApiExample(
                "Edit an output",
                value={"decision": "edit", "output": {"text": "2.0 is out, with 40 fixes."}},
                request_only=True,
            ),
            OpenApiExample(
                "Reject with feedback",
                value={"decision": "reject", "comment": "Mention the migration steps"},
                request_only=True,
            ),
            OpenApiExample("Answer a question", value={"decision": "respond", "answer": "blue"}, request_only=True),
            OpenApiExample(
                "Decided",
                value={
                    **EXAMPLE_REVIEW_DETAIL,
                    "status": "decided",
                    "decision": "approve",
                    "decided_by": "alice",
                    "decided_at": "2026-11-24T12:05:00Z",
                },
                response_only=True,
            ),
        ],
    )
    def post(self, request, review_id):
        review = review_get(user=request.user, review_id=review_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        body = data.validated_data
        review = review_decide(
            review_id=review.id,
            user=request.user,
            decision=body["decision"],
            comment=body["comment"],
            value=_decision_value(review.kind, body),
        )
        return Response(_review_detail(review_get(user=request.user, review_id=review.id)))


def _decision_value(kind: str, body: dict):
    if body["decision"] == ReviewDecision.RESPOND:
        return body.get("answer")
    if body["decision"] != ReviewDecision.EDIT:
        return None
    if kind == ReviewKind.PLAN:
        return body.get("plan", body.get("output"))
    if kind == ReviewKind.BEFORE:
        return body.get("input")
    return body.get("output")


class ReviewClaimView(APIView):
    """Take a review so that nobody else decides it meanwhile; 409 if someone holds it."""

    @extend_schema(
        operation_id="reviews_claim",
        summary="Claim a review",
        request=None,
        responses={200: ReviewDetailOutputSerializer, 401: UNAUTHENTICATED, 404: NOT_FOUND, 409: CONFLICT},
        examples=[
            OpenApiExample("Claimed", value={**EXAMPLE_REVIEW_DETAIL, "claimed_by": "alice"}, response_only=True)
        ],
    )
    def post(self, request, review_id):
        review = review_claim(review=review_get(user=request.user, review_id=review_id), user=request.user)
        return Response(_review_detail(review_get(user=request.user, review_id=review.id)))


class ReviewReleaseView(APIView):
    """Give a claimed review back (its claimant, or staff)."""

    @extend_schema(
        operation_id="reviews_release",
        summary="Release a claimed review",
        request=None,
        responses={200: ReviewDetailOutputSerializer, 401: UNAUTHENTICATED, 404: NOT_FOUND, 409: CONFLICT},
        examples=[OpenApiExample("Released", value=EXAMPLE_REVIEW_DETAIL, response_only=True)],
    )
    def post(self, request, review_id):
        review = review_release(review=review_get(user=request.user, review_id=review_id), user=request.user)
        return Response(_review_detail(review_get(user=request.user, review_id=review.id)))
