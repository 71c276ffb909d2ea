"""The reviews REST API: list, read, decide, claim and release review gates."""

from __future__ import annotations

from rest_framework import serializers
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs.fields import BoundedJSONObjectField, StrictCharField
from jobs.models import ReviewDecision, ReviewKind, ReviewStatus
from jobs.review_selectors import (
    review_diff,
    review_get,
    review_history,
    review_list,
    review_upstream,
)
from jobs.reviews import review_claim, review_decide, review_release


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

    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
        reviews = review_list(user=request.user, status=data.get("status"), kind=data.get("kind"), job_id=data.get("job"))
        page = self.paginate_queryset(reviews)
        return self.get_paginated_response(ReviewOutputSerializer(page, many=True).data)


class ReviewDetailView(APIView):
    def get(self, request, review_id):
        return Response(_review_detail(review_get(user=request.user, review_id=review_id)))


class ReviewDecisionView(APIView):
    """POST ``{"decision": "approve"|"edit"|"reject"|"respond", "comment"?, "output"?,
    "input"?, "plan"?, "answer"?}``. An edit carries the new ``input`` (before), ``output``
    (after) or ``plan`` (plan review); respond carries the ``answer``."""

    class InputSerializer(serializers.Serializer):
        decision = serializers.ChoiceField(
            choices=[ReviewDecision.APPROVE, ReviewDecision.EDIT, ReviewDecision.REJECT, ReviewDecision.RESPOND]
        )
        comment = StrictCharField(required=False, allow_blank=True, default="", max_length=10_000)
        output = serializers.JSONField(required=False)
        input = BoundedJSONObjectField(max_bytes=256 * 1024, required=False)
        plan = serializers.JSONField(required=False)
        answer = serializers.JSONField(required=False)

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

    def post(self, request, review_id):
        review = review_claim(review=review_get(user=request.user, review_id=review_id), user=request.user)
        return Response(_review_detail(review_get(user=request.user, review_id=review.id)))


class ReviewReleaseView(APIView):
    def post(self, request, review_id):
        review = review_release(review=review_get(user=request.user, review_id=review_id), user=request.user)
        return Response(_review_detail(review_get(user=request.user, review_id=review.id)))
