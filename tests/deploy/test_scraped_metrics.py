"""Every metric the alerts, the dashboard and the autoscalers read is in a real scrape
of the web's /metrics, with the labels they group by."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pybreaker
import pytest
import yaml
from django.test import Client

from agents.breakers import breaker_for, breaker_reset
from agents.registry import agent_get

MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "base" / "monitoring"


def series(text: str) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
        if match:
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
            found.setdefault(match.group(1), []).append({**labels, "__value__": float(match.group(3))})
    return found


@pytest.fixture
def open_circuit(redis_flushed):
    spec = agent_get("echo")
    breaker = breaker_for(spec)
    breaker.open()
    assert breaker.current_state == pybreaker.STATE_OPEN
    yield spec
    breaker_reset(spec)


def test_the_alerts_and_dashboard_read_series_the_web_exports(db, open_circuit, settings):
    settings.AGENTBUS_METRICS_TOKEN = "scrape-secret"  # /metrics needs one with DEBUG off
    text = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret").content.decode()
    scraped = series(text)
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"][0]["rules"]
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    queries = [r["expr"] for r in rules] + [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    # Counters and histograms appear once a process has recorded one; the state gauges
    # (what the alerts mostly read) are there on every scrape.
    for gauge in ("agentbus_queue_depth", "agentbus_queue_oldest_age_seconds", "agentbus_workers",
                  "agentbus_orchestrator_leader", "agentbus_agent_circuit", "agentbus_tasks"):  # fmt: skip
        assert gauge in scraped, gauge
        assert any(gauge in q for q in queries), gauge
    circuit = {(s["agent"], s["state"]): s["__value__"] for s in scraped["agentbus_agent_circuit"]}
    assert circuit[("echo", "open")] == 1
    assert circuit[("echo", "closed")] == 0
    assert {s["queue"] for s in scraped["agentbus_queue_depth"]} >= {"default"}
