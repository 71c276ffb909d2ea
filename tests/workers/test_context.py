"""What a Python agent's context gives it: artifacts (downloadable by the job's owner
only) and follow-up tasks that join the job's DAG."""

from __future__ import annotations

import pytest

from jobs.models import Artifact, Task
from tests.conftest import job_wait, plan

pytestmark = pytest.mark.django_db(transaction=True)


def submit(client, body: dict) -> str:
    response = client.post("/jobs", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def test_artifacts_are_listed_in_the_results_and_downloadable_by_their_owner_only(pipeline, alice, bob):
    job_id = submit(
        alice, {"plan": plan({"key": "draw", "agent": "artist", "input": {"files": {"report.md": "# Tides\n"}}})}
    )
    assert job_wait(job_id).status == "succeeded"

    artifacts = {a["name"]: a for a in alice.get(f"/jobs/{job_id}/results").json()["artifacts"]}
    assert set(artifacts) == {"report.md", "raw.bin"}
    report = artifacts["report.md"]
    assert (report["task"], report["size"], report["content_type"]) == ("draw", 8, "text/plain")
    assert report["url"] == f"http://testserver/jobs/{job_id}/artifacts/{report['id']}"

    download = alice.get(report["url"])
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == b"# Tides\n"
    assert 'attachment; filename="report.md"' in download["Content-Disposition"]
    raw = alice.get(artifacts["raw.bin"]["url"])
    assert b"".join(raw.streaming_content) == bytes(range(256))

    # Someone else gets a 404, as for anything of another user's.
    denied = bob.get(report["url"])
    assert denied.status_code == 404 and denied.json()["error"] == "not_found"
    assert (
        bob.get(f"/jobs/{job_id}/artifacts/{Artifact.objects.exclude(pk=report['id']).first().pk}").status_code == 404
    )


def test_spawned_tasks_join_the_dag_after_their_parent_and_make_the_result(pipeline, alice):
    job_id = submit(alice, {"plan": plan({"key": "root", "agent": "spawner", "input": {"count": 2}})})
    job = job_wait(job_id)
    assert job.status == "succeeded", job.error
    tasks = {t.key: t for t in Task.objects.filter(job_id=job_id)}
    assert set(tasks) == {"root", "child-0", "child-1"}
    assert tasks["child-1"].depends_on == ["root"]
    assert tasks["child-1"].output == {"input": {"n": 1}, "upstream": {"root": {"spawned": 2}}}
    assert tasks["root"].finished_at <= tasks["child-0"].started_at
    assert set(job.result["outputs"]) == {"child-0", "child-1"}
