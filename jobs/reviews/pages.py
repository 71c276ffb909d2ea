"""The review pages: the inbox (``/app/inbox``) and one review (``/app/reviews/{id}``).

Plain HTML forms with CSRF tokens, so approve, edit, reject, respond and claim work with
JavaScript off; the inbox's live updates and the keyboard shortcuts are additions on top.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from core.errors import ApplicationError
from core.json_policy import JSONPolicyError, json_loads
from jobs.models import ReviewDecision, ReviewKind, ReviewStatus
from jobs.reviews.decisions import review_claim, review_decide, review_release
from jobs.reviews.gates import review_summary
from jobs.reviews.selectors import (
    pretty,
    review_diff,
    review_get,
    review_history,
    review_list,
    review_upstream,
)

INBOX_LIMIT = 200


@login_required
def inbox(request: HttpRequest) -> HttpResponse:
    pending = list(review_list(user=request.user, status=ReviewStatus.PENDING)[:INBOX_LIMIT])
    recent = list(review_list(user=request.user).exclude(status=ReviewStatus.PENDING)[:10])
    return render(
        request,
        "reviews/inbox.html",
        {
            "pending": pending,
            "recent": recent,
            "pending_json": [review_summary(r) for r in pending],
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def review_page(request: HttpRequest, review_id) -> HttpResponse:
    review = review_get(user=request.user, review_id=review_id)
    form_error = None
    if request.method == "POST":
        try:
            message = _act(request, review)
        except ApplicationError as exc:
            form_error = exc
        else:
            messages.success(request, message)
            return redirect("review-page", review_id=review.id)
        review = review_get(user=request.user, review_id=review_id)
    return render(
        request,
        "reviews/review.html",
        _context(request, review, form_error),
        status=form_error.status_code if form_error else 200,
    )


def _act(request: HttpRequest, review) -> str:
    """Validate the form, call one service; returns the message to show."""
    action = request.POST.get("action", "")
    if action == "claim":
        review_claim(review=review, user=request.user)
        return "You claimed this review; nobody else can decide it until you release it."
    if action == "release":
        review_release(review=review, user=request.user)
        return "Released."
    decision = request.POST.get("decision", "")
    if decision not in (ReviewDecision.APPROVE, ReviewDecision.EDIT, ReviewDecision.REJECT, ReviewDecision.RESPOND):
        raise ApplicationError("Choose approve, edit, reject or respond.", fields={"decision": ["unknown decision"]})
    comment = request.POST.get("comment", "").strip()
    if len(comment) > 10_000:
        raise ApplicationError("The comment is too long.", fields={"comment": ["at most 10000 characters"]})
    value = None
    if decision == ReviewDecision.EDIT:
        value = _parse_edit(review, request.POST.get("value", ""))
    elif decision == ReviewDecision.RESPOND:
        value = (request.POST.get("answer_text") or "").strip() or request.POST.get("answer_option") or ""
    review_decide(review_id=review.id, user=request.user, decision=decision, comment=comment, value=value)
    return {
        ReviewDecision.APPROVE: "Approved.",
        ReviewDecision.EDIT: "Your edit was saved and approved.",
        ReviewDecision.REJECT: "Rejected.",
        ReviewDecision.RESPOND: "Answer sent; the agent runs again with it.",
    }[decision]


def _parse_edit(review, text: str):
    """The edited value: JSON, or plain text when the proposed value was text."""
    field = {ReviewKind.PLAN: "plan", ReviewKind.BEFORE: "input"}.get(review.kind, "output")
    if isinstance(review.proposed, str):
        return text
    try:
        return json_loads(text, root=field)
    except JSONPolicyError as exc:
        raise ApplicationError(f"The edited {field}: {exc}", fields={exc.path: [exc.message]}) from exc
    except ValueError as exc:
        raise ApplicationError(
            f"The edited {field} is not valid JSON: {exc}", fields={field: ["not valid JSON"]}
        ) from exc


def _context(request: HttpRequest, review, form_error) -> dict:
    may_act = review.is_pending and (review.claimed_by_id in (None, request.user.id))
    proposed_text = pretty(review.proposed) if review.proposed is not None else ""
    return {
        "review": review,
        "job": review.job,
        "task": review.task,
        "task_input": pretty(review.task.input) if review.task else "",
        "upstream": [(key, pretty(output)) for key, output in sorted(review_upstream(review=review).items())],
        "proposed_text": proposed_text,
        "proposed_is_text": isinstance(review.proposed, str),
        "decided_text": pretty(review.decided_value) if review.decided_value is not None else "",
        "diff": review_diff(review=review),
        "history": review_history(review=review),
        "question": (review.proposed or {}).get("question") if review.kind == ReviewKind.QUESTION else None,
        "options": (review.proposed or {}).get("options") or [] if review.kind == ReviewKind.QUESTION else [],
        "may_act": may_act,
        "claimed_by_other": review.is_pending and review.claimed_by_id not in (None, request.user.id),
        "can_edit": review.kind in (ReviewKind.PLAN, ReviewKind.BEFORE, ReviewKind.AFTER),
        "edit_label": {ReviewKind.PLAN: "plan", ReviewKind.BEFORE: "input", ReviewKind.AFTER: "output"}.get(
            review.kind, ""
        ),
        "form_error": form_error,
        "posted": request.POST if form_error else {},
    }
