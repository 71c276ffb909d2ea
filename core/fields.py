"""Serializer fields that refuse the wrong JSON type instead of coercing it.

DRF's CharField turns 123 into "123" and IntegerField turns "5" into 5; for a public
JSON API a wrong type is a client bug, and the 400 should say so.
"""

from __future__ import annotations

import json

from rest_framework import serializers


class StrictCharField(serializers.CharField):
    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class BoundedJSONObjectField(serializers.DictField):
    """A JSON object whose serialized size is bounded (metadata, task input)."""

    def __init__(self, *, max_bytes: int, **kwargs) -> None:
        self.max_bytes = max_bytes
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            self.fail("not_a_dict", input_type=type(data).__name__)
        size = len(json.dumps(data))
        if size > self.max_bytes:
            raise serializers.ValidationError(f"is {size} bytes of JSON; at most {self.max_bytes}")
        return data
