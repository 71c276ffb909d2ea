"""The API's JSON parser: DRF's, refusing strings PostgreSQL cannot store.

JSON may carry ``\\u0000`` and unpaired surrogates (``\\ud800``); Python parses both,
but PostgreSQL's text and jsonb types reject them, so such input used to reach the
database and fail there with a 500 (found by the schemathesis run in tests/security).
Checking once here, for every key and string of every request body, makes it a 400
wherever it appears: job metadata, plan task input, memory text or metadata, reviews.
"""

from __future__ import annotations

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


def _unstorable(value) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


class StrictJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        if _unstorable(data):
            raise ParseError("JSON strings may not contain NUL characters (\\u0000) or unpaired surrogates.")
        return data
