"""What a protocol client may do, on behalf of one user: the same validation, services
and selectors the REST views use, so the MCP and A2A servers see exactly what REST
sees (another user's job is "not found", a bad plan names its field).

Each function is synchronous (Django's ORM) and answers JSON-ready dicts in the REST
shapes; every refusal is an :class:`OperationError` carrying the REST error body
(``{"error", "detail", "fields"?}``) and its HTTP status, which each protocol maps to
its own error (an MCP tool error, an A2A error).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from django.http import Http404
from rest_framework import serializers

from core.errors import ApplicationError, flatten_errors, http_status_of
from jobs.models import Job
from jobs.reviews.decisions import review_claim, review_decide
from jobs.reviews.selectors import review_get, review_list
from jobs.reviews.views import ReviewDecisionView, ReviewOutputSerializer, _decision_value, _review_detail
from jobs.selectors import job_get
from jobs.services import job_cancel, job_submit
from jobs.views import JobListView, job_detail_body, job_results_body

P = ParamSpec("P")
R = TypeVar("R")

MAX_LISTED = 100


class OperationError(Exception):
    """A refusal in the REST API's terms: ``body`` is its JSON error, ``status`` its code."""

    def __init__(self, status: int, error: str, detail: str, fields: dict[str, list[str]] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.body: dict[str, Any] = {"error": error, "detail": detail}
        if fields:
            self.body["fields"] = fields

    @property
    def error(self) -> str:
        return self.body["error"]

    def __str__(self) -> str:
        fields = self.body.get("fields") or {}
        where = "".join(f"; {path}: {', '.join(problems)}" for path, problems in fields.items())
        return f"{self.body['error']}: {self.body['detail']}{where}"


def refusals_as_operation_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Map the errors services and selectors raise to OperationError, as the REST
    exception handler maps them to responses."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except ApplicationError as exc:
            raise OperationError(http_status_of(exc), exc.code, exc.message, exc.fields) from None
        except (Http404, Job.DoesNotExist):
            raise OperationError(404, "not_found", "Not found.") from None
        except serializers.ValidationError as exc:
            fields = flatten_errors(exc.detail)
            first = next(iter(fields.items()), ("body", ["Invalid input."]))
            raise OperationError(400, "validation_error", f"{first[0]}: {first[1][0]}", fields) from None
        except ValueError as exc:  # a malformed id, say
            raise OperationError(400, "validation_error", str(exc)) from None

    return wrapper


def _valid_uuid(value: str, field: str) -> str:
    import uuid

    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        # As REST answers a malformed id in a path: there is no such object.
        raise OperationError(404, "not_found", f"No {field} with id {value!r}.") from None


@refusals_as_operation_errors
def job_submit_as(user, *, spec: dict, idempotency_key: str | None = None) -> tuple[Job, bool]:
    """POST /jobs: the body validated by the REST view's own serializer."""
    if not isinstance(spec, dict):
        raise OperationError(400, "validation_error", "The job must be an object.", {"body": ["must be an object"]})
    data = JobListView.InputSerializer(data=spec)
    data.is_valid(raise_exception=True)
    if idempotency_key is not None and not (1 <= len(idempotency_key) <= 255):
        raise OperationError(400, "invalid", "An idempotency key is 1 to 255 characters.")
    return job_submit(owner=user, spec=dict(data.validated_data), idempotency_key=idempotency_key)


@refusals_as_operation_errors
def job_for(user, job_id: str) -> Job:
    return job_get(user=user, job_id=_valid_uuid(job_id, "job"))


@refusals_as_operation_errors
def job_show(user, job_id: str) -> dict:
    """GET /jobs/{id}."""
    return job_detail_body(job_for(user, job_id))


@refusals_as_operation_errors
def job_results(user, job_id: str) -> dict:
    """GET /jobs/{id}/results (a 409 while the job runs)."""
    return job_results_body(job_for(user, job_id))


@refusals_as_operation_errors
def job_cancel_as(user, job_id: str) -> dict:
    """POST /jobs/{id}/cancel (jobs.lifecycle takes the job row first, so a cancel racing
    a worker or the orchestrator waits its turn instead of deadlocking)."""
    return job_detail_body(job_cancel(job=job_for(user, job_id)))


@refusals_as_operation_errors
def reviews_listed(user, *, status: str | None = "pending", job_id: str | None = None) -> list[dict]:
    """GET /reviews (the newest MAX_LISTED)."""
    reviews = review_list(user=user, status=status or None, job_id=_valid_uuid(job_id, "job") if job_id else None)
    return list(ReviewOutputSerializer(reviews[:MAX_LISTED], many=True).data)


@refusals_as_operation_errors
def review_show(user, review_id: str) -> dict:
    """GET /reviews/{id}."""
    return _review_detail(review_get(user=user, review_id=_valid_uuid(review_id, "review")))


@refusals_as_operation_errors
def review_decide_as(user, review_id: str, body: dict) -> dict:
    """POST /reviews/{id}/decision, the body validated by the REST view's serializer."""
    review = review_get(user=user, review_id=_valid_uuid(review_id, "review"))
    data = ReviewDecisionView.InputSerializer(data=body)
    data.is_valid(raise_exception=True)
    values = data.validated_data
    review_decide(
        review_id=review.id,
        user=user,
        decision=values["decision"],
        comment=values["comment"],
        value=_decision_value(review.kind, values),
    )
    return _review_detail(review_get(user=user, review_id=review.id))


@refusals_as_operation_errors
def review_claim_as(user, review_id: str) -> dict:
    review = review_claim(review=review_get(user=user, review_id=_valid_uuid(review_id, "review")), user=user)
    return _review_detail(review_get(user=user, review_id=review.id))


@refusals_as_operation_errors
def memory_store_as(user, body: dict) -> dict:
    """POST /memory/store."""
    from memory.services import memory_store_many
    from memory.views import MemoryInputSerializer, _new_memory

    data = MemoryInputSerializer(data=body)
    data.is_valid(raise_exception=True)
    (memory,) = memory_store_many(owner=user, items=[_new_memory(data.validated_data)])
    return {"id": str(memory.id)}


@refusals_as_operation_errors
def memory_search_as(user, params: dict, filters: dict | None = None) -> dict:
    """GET /memory/search."""
    from memory.selectors import memory_search
    from memory.views import MemorySearchView

    data = MemorySearchView.FilterSerializer(data=params)
    data.is_valid(raise_exception=True)
    values = data.validated_data
    hits = memory_search(
        user=user,
        query=values["q"],
        namespace=values.get("namespace"),
        k=values["k"],
        min_score=values.get("min_score"),
        filters=filters or None,
        mode=values["mode"],
    )
    return {"results": list(MemorySearchView.OutputSerializer(hits, many=True).data)}
