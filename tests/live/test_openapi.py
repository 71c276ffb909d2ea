"""The OpenAPI reference: a valid schema covering every endpoint, and docs that need
nothing from the internet."""

from __future__ import annotations

import re

import pytest
import yaml
from django.core.management import call_command
from django.test import Client

pytestmark = pytest.mark.django_db


def test_the_schema_validates_without_warnings(tmp_path):
    # drf-spectacular's own check: OpenAPI 3 validity, and no warnings about a view it
    # could not understand (a missing serializer or an unresolvable field).
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    schema = yaml.safe_load(out.read_text())
    assert schema["openapi"].startswith("3.")


def test_the_schema_describes_every_job_endpoint_with_schemas_and_examples():
    response = Client().get("/schema?format=json")
    assert response.status_code == 200
    schema = response.json()
    paths = schema["paths"]
    for path in (
        "/jobs",
        "/jobs/{job_id}",
        "/jobs/{job_id}/results",
        "/jobs/{job_id}/cancel",
        "/jobs/{job_id}/events",
        "/auth/token",
    ):
        assert any(p.rstrip("/") == path for p in paths), (path, list(paths))

    submit = paths["/jobs"]["post"]
    assert "examples" in submit["requestBody"]["content"]["application/json"]
    assert {"201", "200", "400", "401", "422"} <= set(submit["responses"])
    assert submit["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
    assert "Idempotency-Key" in [p["name"] for p in submit["parameters"]]
    for path, operations in paths.items():
        for method, operation in operations.items():
            ok = next(code for code in operation["responses"] if code.startswith("2"))
            if ok == "204":
                continue  # no content to describe
            # JSON, or for GET /jobs/{id}/stream the media type it answers (text/event-stream)
            media = operation["responses"][ok].get("content", {})
            content = media.get("application/json") or next(iter(media.values()), {})
            assert "schema" in content, f"{method} {path} has no response schema"
            if content["schema"].get("format") == "binary":
                continue  # a file download: its bytes are the example
            assert "examples" in content, f"{method} {path} has no response example"
            if "requestBody" in operation:
                assert "schema" in operation["requestBody"]["content"]["application/json"], (method, path)


def test_the_docs_page_serves_every_asset_from_the_app():
    client = Client()
    response = client.get("/docs")
    assert response.status_code == 200
    html = response.content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any("swagger-ui" in a for a in assets), assets
    for asset in assets:
        assert not re.match(r"^(https?:)?//", asset), f"external asset {asset}"
    # The schema URL is relative too; the UI's start-up script is an asset of its own
    # (``?script``, so the Content-Security-Policy needs no inline script).
    script = next(a for a in assets if "script" in a.split("?")[-1])
    assert "/schema" in client.get(script.replace("&amp;", "&")).content.decode()


def test_the_docs_assets_are_served_by_the_app():
    client = Client()
    html = client.get("/docs").content.decode()
    local = [a for a in re.findall(r'(?:src|href)="([^"]+)"', html) if a.startswith("/static/")]
    assert local, html
    for asset in local:
        response = client.get(asset)
        assert response.status_code == 200, asset
