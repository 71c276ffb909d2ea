"""What the agent sees of its reviews: ``ctx.human`` (``human`` for HTTP agents)."""

from __future__ import annotations

from jobs.models import Review, ReviewDecision, ReviewKind, ReviewMode, ReviewStatus, Task
from jobs.plans import PLANNER_TASK_KEY


def task_human_context(*, task: Task) -> dict:
    """What humans told this task so far, for ``ctx.human`` (and HTTP agents' ``human``):
    ``answer``/``question`` (the newest answered question), ``answers`` (all of them, in
    order), ``feedback`` (the newest rejection's comment), ``feedbacks``,
    ``rejected_output`` (the output that was rejected) and ``edited_input`` (True when a
    reviewer changed the input). Empty for a task that no gate touched."""
    if task.attempt <= 1 and task.review == ReviewMode.NONE:
        return {}  # no gate could have been decided yet: skip the query on the hot path
    decided = Review.objects.filter(task_id=task.id).exclude(status=ReviewStatus.PENDING).exclude(decision="")
    human: dict = {}
    answers, feedbacks = [], []
    for kind, decision, proposed, value, comment in decided.order_by("created_at").values_list(
        "kind", "decision", "proposed", "decided_value", "comment"
    ):
        if kind == ReviewKind.QUESTION and decision == ReviewDecision.RESPOND:
            answer = (value or {}).get("answer")
            answers.append({"question": (proposed or {}).get("question"), "answer": answer if answer != "" else None})
        elif kind == ReviewKind.AFTER and decision == ReviewDecision.REJECT:
            feedbacks.append(comment)
            human["rejected_output"] = proposed
        elif kind == ReviewKind.BEFORE and decision == ReviewDecision.EDIT:
            human["edited_input"] = True
    if task.key == PLANNER_TASK_KEY:  # the planner (workers.planner): its rejected plans
        for proposed, comment in (
            Review.objects.filter(job_id=task.job_id, kind=ReviewKind.PLAN, decision=ReviewDecision.REJECT)
            .order_by("created_at")
            .values_list("proposed", "comment")
        ):
            feedbacks.append(comment)
            human["rejected_output"] = proposed
    if answers:
        human.update(answer=answers[-1]["answer"], question=answers[-1]["question"], answers=answers)
    if feedbacks:
        human.update(feedback=feedbacks[-1], feedbacks=feedbacks)
    return human
