"""deploy/: what can be checked without a container engine.

The Kubernetes manifests validate (strictly) against the Kubernetes schemas that
kubernetes-validate ships; the Dockerfile passes hadolint; the compose file is consistent; and
the image's entrypoint, environment and HEALTHCHECK command work when run directly here.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from sessiongate.config import Settings
from sessiongate.store.embedded import free_port
from tests.e2e.test_process import wait_serving

BIN = Path(sys.executable).parent
SETTINGS_ENV = {f.metadata["env"] for f in dataclasses.fields(Settings)}
SECRET_ENV = {f.metadata["env"] for f in dataclasses.fields(Settings) if f.metadata.get("secret")}
CLIENT_ENV = {"SESSIONGATE_ADDR", "SESSIONGATE_TOKEN", "SESSIONGATE_TOKEN_FILE",
              "SESSIONGATE_TLS_CA"}  # sessiongate.client.ClientConfig.from_env


def known_env(name: str) -> bool:
    return (name in SETTINGS_ENV or name in CLIENT_ENV
            or (name.endswith("_FILE") and name.removesuffix("_FILE") in SECRET_ENV))


# -- Kubernetes ------------------------------------------------------------------------------

@pytest.fixture
def k8s_docs(repo_root: Path) -> list[dict[str, Any]]:
    return list(yaml.safe_load_all((repo_root / "deploy/k8s/sessiongate.yaml").read_text()))


def test_k8s_manifests_validate_against_the_schemas(k8s_docs: list[dict[str, Any]]) -> None:
    assert {d["kind"] for d in k8s_docs} >= {"Secret", "Deployment", "StatefulSet", "Service"}
    for doc in k8s_docs:
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
    # The validator does catch mistakes: a misspelt field fails strict validation.
    broken = copy.deepcopy(next(d for d in k8s_docs if d["kind"] == "Deployment"))
    broken["spec"]["template"]["spec"]["initContainers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)


def test_k8s_pod_runs_the_sidecar_with_probes_and_secret_tokens(
    k8s_docs: list[dict[str, Any]],
) -> None:
    secret = next(d for d in k8s_docs if d["kind"] == "Secret")
    pod = next(d for d in k8s_docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    (sidecar,) = pod["initContainers"]
    assert sidecar["restartPolicy"] == "Always"  # a native sidecar: up before the app
    assert [c["name"] for c in pod["containers"]] == ["app"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert sidecar[probe]["grpc"]["port"] == 50051
    env = {e["name"]: e["value"] for e in sidecar["env"]}
    assert all(known_env(name) for name in env), env
    for role in ("APP", "BILLING", "ADMIN"):
        path = Path(env[f"SESSIONGATE_{role}_TOKENS_FILE"])
        assert path.name in secret["stringData"]
        mount = next(m for m in sidecar["volumeMounts"] if path.is_relative_to(m["mountPath"]))
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    assert sidecar["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["runAsNonRoot"] is True
    # The app container sees only the app token.
    app_env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert all(known_env(name) for name in app_env), app_env
    app_volume = next(v for v in pod["volumes"] if v["name"] == "app-token")
    assert [i["key"] for i in app_volume["secret"]["items"]] == ["app"]
    redis = next(d for d in k8s_docs if d["kind"] == "StatefulSet")
    assert "--appendonly" in redis["spec"]["template"]["spec"]["containers"][0]["args"]


# -- compose ---------------------------------------------------------------------------------

def test_compose_file_is_consistent(repo_root: Path) -> None:
    deploy = repo_root / "deploy"
    compose = yaml.safe_load((deploy / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"redis", "sessiongate", "demo-app"}
    redis_cmd = services["redis"]["command"]
    assert redis_cmd[redis_cmd.index("--appendonly") + 1] == "yes"
    assert any(v.endswith(":/data") for v in services["redis"]["volumes"])
    sidecar = services["sessiongate"]
    assert sidecar["build"]["dockerfile"] == "deploy/Dockerfile"
    assert (deploy / sidecar["build"]["context"] / sidecar["build"]["dockerfile"]).is_file()
    assert all(known_env(k) for k in sidecar["environment"]), sidecar["environment"]
    assert sidecar["environment"]["SESSIONGATE_REDIS_URL"].startswith("redis://redis:")
    for name in sidecar["secrets"]:
        assert (deploy / compose["secrets"][name]["file"]).is_file()
    assert sidecar["depends_on"]["redis"]["condition"] == "service_healthy"
    demo = services["demo-app"]
    assert all(known_env(k) for k in demo["environment"])
    assert demo["depends_on"]["sessiongate"]["condition"] == "service_healthy"
    assert (repo_root / "examples/asgi_login/app.py").is_file()


# -- Dockerfile ------------------------------------------------------------------------------

@dataclasses.dataclass
class Dockerfile:
    env: dict[str, str]
    entrypoint: list[str]
    cmd: list[str]
    healthcheck: list[str]
    user: str
    stages: int


def parse_dockerfile(path: Path) -> Dockerfile:
    text = path.read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    out: dict[str, Any] = {"stages": 0, "user": "root"}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            out["stages"] += 1
            env = {}  # the final stage's environment is what the image runs with
        elif word == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                env[key] = value
        elif word in ("ENTRYPOINT", "CMD"):
            out[word.lower()] = json.loads(rest)
        elif word == "HEALTHCHECK":
            out["healthcheck"] = json.loads(rest[rest.index("CMD") + 3:])
        elif word == "USER":
            out["user"] = rest.strip()
    return Dockerfile(env=env, **out)


def test_dockerfile_passes_hadolint(repo_root: Path) -> None:
    r = subprocess.run([str(BIN / "hadolint"), "deploy/Dockerfile"], cwd=repo_root,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_dockerfile_is_multi_stage_non_root_with_a_healthcheck(repo_root: Path) -> None:
    df = parse_dockerfile(repo_root / "deploy/Dockerfile")
    assert df.stages >= 2
    assert df.user.split(":")[0] not in ("root", "0")
    assert df.entrypoint == ["sessiongate"] and df.cmd == ["serve"]
    assert df.healthcheck[:2] == ["sessiongate", "health"]
    assert all(known_env(k) for k in df.env if k.startswith("SESSIONGATE_"))


def test_the_image_entrypoint_and_healthcheck_work_when_run_directly(
    repo_root: Path, tmp_path: Path
) -> None:
    """ENTRYPOINT + CMD with the image's ENV (ports moved to free ones, tokens as files)."""
    df = parse_dockerfile(repo_root / "deploy/Dockerfile")
    grpc_port, metrics_port, http_port = free_port(), free_port(), free_port()
    tokens = {}
    for role in ("app", "billing", "admin"):
        (tmp_path / role).write_text(f"{role}-secret\n")
        tokens[f"SESSIONGATE_{role.upper()}_TOKENS_FILE"] = str(tmp_path / role)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SESSIONGATE_")},
           **{k: v for k, v in df.env.items() if k.startswith(("SESSIONGATE_", "PYTHON"))},
           **tokens,
           "SESSIONGATE_GRPC_ADDR": df.env["SESSIONGATE_GRPC_ADDR"].replace(
               ":50051", f":{grpc_port}"),
           "SESSIONGATE_METRICS_ADDR": df.env["SESSIONGATE_METRICS_ADDR"].replace(
               ":9464", f":{metrics_port}"),
           "SESSIONGATE_HTTP_ADDR": df.env["SESSIONGATE_HTTP_ADDR"].replace(
               ":9465", f":{http_port}"),
           "SESSIONGATE_DATA_DIR": str(tmp_path / "data")}
    assert env["SESSIONGATE_GRPC_ADDR"].startswith("0.0.0.0:")  # so tokens are required
    health = [str(BIN / df.healthcheck[0]), *df.healthcheck[1:]]
    health = [a.replace(":50051", f":{grpc_port}") for a in health]
    proc = subprocess.Popen([str(BIN / df.entrypoint[0]), *df.entrypoint[1:], *df.cmd],
                            env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_serving(f"127.0.0.1:{grpc_port}", timeout=60)  # in-process: no CLI start per poll
        r = subprocess.run(health, env=env, capture_output=True, text=True, timeout=30)
        assert (r.returncode, r.stdout.strip()) == (0, "SERVING"), r.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert '"sessiongate serving"' in err
    # The same HEALTHCHECK fails (exit 1) when nothing serves.
    r = subprocess.run(health, env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
