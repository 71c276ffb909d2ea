"""The API's JSON parser: DRF's, under the project's JSON policy.

``core.json_policy`` says what is refused (nesting depth, non-finite numbers,
integers beyond 2^53-1, NUL and unpaired surrogates) and why; each used to reach a
database, an index or Python's recursion limit and fail there with a 500. Checking once
here, for every request body, makes it a 400 naming the field wherever it appears: job
metadata, plan task input, memory text or metadata, reviews, even ``/auth/token``.
"""

from __future__ import annotations

import codecs

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from core.json_policy import JSONPolicyError, json_loads


class JSONPolicyParseError(ParseError):
    """A 400 ``parse_error`` whose ``fields`` name the refused value (read by
    ``core.errors.api_exception_handler``)."""

    def __init__(self, exc: JSONPolicyError) -> None:
        super().__init__(f"JSON refused: {exc}")
        self.fields = {exc.path: [exc.message]}


class StrictJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding") or settings.DEFAULT_CHARSET
        try:
            text = codecs.getreader(encoding)(stream).read()
            return json_loads(text)
        except JSONPolicyError as exc:
            raise JSONPolicyParseError(exc) from None
        except ValueError as exc:  # malformed JSON, a bad encoding, an integer of >4300 digits
            raise ParseError(f"JSON parse error - {exc}") from None
