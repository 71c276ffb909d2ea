"""How long a review claim holds, and who may break one (used by jobs.reviews).

A claim keeps others from deciding a review while its holder works on it; it is not a
lock for ever. A claim older than ``AGENTBUS_REVIEW_CLAIM_TTL`` seconds (default an hour;
0: claims never expire) counts as released: anyone who may decide the review can claim
or decide it. Besides the holder, the job's owner and staff may release a claim, so a
reviewer who went away cannot hold the owner's work hostage.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone


def claim_expired_q() -> Q:
    """Matches reviews whose claim has expired (never, with a TTL of 0)."""
    ttl = settings.AGENTBUS_REVIEW_CLAIM_TTL
    if not ttl:
        return Q(pk__in=[])
    return Q(claimed_at__lt=timezone.now() - timedelta(seconds=ttl))


def claim_holds(review) -> bool:
    """Whether the review's claim still binds others."""
    ttl = settings.AGENTBUS_REVIEW_CLAIM_TTL
    if not review.claimed_by_id:
        return False
    return not ttl or review.claimed_at is None or review.claimed_at >= timezone.now() - timedelta(seconds=ttl)


def may_release_q(user) -> Q:
    """Reviews ``user`` may release: staff any, the job's owner theirs, a holder their own."""
    if user.is_staff:
        return Q()
    return Q(claimed_by=user) | Q(job__owner=user)
