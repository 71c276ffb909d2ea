"""Routes of the reviews API and pages, included from agentbus_site/urls.py. Paths work
with or without a trailing slash, like the rest of the API."""

from __future__ import annotations

from django.urls import re_path

from jobs.reviews.pages import inbox, review_page
from jobs.reviews.views import (
    ReviewClaimView,
    ReviewDecisionView,
    ReviewDetailView,
    ReviewListView,
    ReviewReleaseView,
)

REVIEW = r"(?P<review_id>[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12})"

urlpatterns = [
    re_path(r"^reviews/?$", ReviewListView.as_view(), name="review-list"),
    re_path(rf"^reviews/{REVIEW}/?$", ReviewDetailView.as_view(), name="review-detail"),
    re_path(rf"^reviews/{REVIEW}/decision/?$", ReviewDecisionView.as_view(), name="review-decision"),
    re_path(rf"^reviews/{REVIEW}/claim/?$", ReviewClaimView.as_view(), name="review-claim"),
    re_path(rf"^reviews/{REVIEW}/release/?$", ReviewReleaseView.as_view(), name="review-release"),
    re_path(r"^app/inbox/?$", inbox, name="review-inbox"),
    re_path(rf"^app/reviews/{REVIEW}/?$", review_page, name="review-page"),
]
