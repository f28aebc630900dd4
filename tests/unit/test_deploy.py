"""deploy/: the Kubernetes manifests against the Kubernetes schemas, offline, and against the service.

The schemas are the ones kubernetes-validate bundles for KUBERNETES_VERSION (strict: an unknown or
misspelt field fails). The manifests are rendered as `kubectl apply -k` would render them: with
`kubectl kustomize` when kubectl is installed, otherwise by the small renderer below (the namespace and
image transforms these manifests use), which is checked against kubectl's output wherever both exist.
Beyond the schemas, the checks are those a schema cannot make: that the ConfigMap is a configuration
the service accepts, that the termination grace outlasts the service's own shutdown grace, that the
probes reach the health listener, that selectors, ports and mounts agree, and that the Dockerfile
installs the way the Makefile does.
"""

from __future__ import annotations

import copy
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from typing import Any

import kubernetes_validate
import pytest
import yaml

from server.config import Settings
from tests.support.processes import REPO

KUBERNETES_VERSION = "1.33.0"  # the oldest minor still supported upstream when this was written
KUSTOMIZE = REPO / "deploy" / "kubernetes"
DOCKERFILE = REPO / "deploy" / "Dockerfile"

Doc = dict[str, Any]


def render_without_kubectl() -> list[Doc]:
    """The kustomization's resources with its namespace and images applied (all these manifests use)."""
    kustomization = yaml.safe_load((KUSTOMIZE / "kustomization.yaml").read_text())
    assert set(kustomization) <= {"apiVersion", "kind", "namespace", "resources", "images"}, "renderer too small"
    images = {i["name"]: f"{i.get('newName', i['name'])}:{i['newTag']}" for i in kustomization.get("images", [])}
    docs: list[Doc] = []
    for resource in kustomization["resources"]:
        for doc in yaml.safe_load_all((KUSTOMIZE / resource).read_text()):
            if doc["kind"] != "Namespace" and "namespace" in kustomization:
                doc["metadata"]["namespace"] = kustomization["namespace"]
            for container in _containers(doc):
                container["image"] = images.get(container["image"], container["image"])
            docs.append(doc)
    return docs


def _containers(doc: Doc) -> Iterator[Doc]:
    spec = doc.get("spec", {})
    pod = spec.get("template", {}).get("spec", {}) if doc["kind"] in ("Deployment", "Job") else {}
    yield from pod.get("initContainers", [])
    yield from pod.get("containers", [])


def render_with_kubectl() -> list[Doc] | None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    out = subprocess.run([kubectl, "kustomize", str(KUSTOMIZE)], capture_output=True, text=True, timeout=60, check=True)
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.fixture(scope="module")
def rendered() -> list[Doc]:
    return render_with_kubectl() or render_without_kubectl()


def one(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def test_every_manifest_is_in_the_kustomization_and_every_resource_exists() -> None:
    listed = yaml.safe_load((KUSTOMIZE / "kustomization.yaml").read_text())["resources"]
    on_disk = {p.name for p in KUSTOMIZE.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(listed) == on_disk
    assert len(listed) == len(set(listed))


def test_every_rendered_document_is_valid_against_the_kubernetes_schemas(rendered: list[Doc]) -> None:
    kinds = {doc["kind"] for doc in rendered}
    assert {"Deployment", "Job", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler",
            "NetworkPolicy", "ConfigMap"} <= kinds  # fmt: skip
    for doc in rendered:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_schema_check_refuses_a_misspelt_field(rendered: list[Doc]) -> None:
    """The validation above is worth something: strict mode refuses what a typo would produce."""
    deployment = copy.deepcopy(one(rendered, "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"]["prot"] = 8081
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_the_small_renderer_renders_what_kubectl_renders() -> None:
    by_kubectl = render_with_kubectl()
    if by_kubectl is None:
        pytest.skip("kubectl is not installed: the manifests were rendered without it")

    def key(doc: Doc) -> tuple[str, str]:
        return doc["kind"], doc["metadata"]["name"]

    assert sorted(by_kubectl, key=key) == sorted(render_without_kubectl(), key=key)  # kubectl orders by kind


def _config(rendered: list[Doc]) -> dict[str, str]:
    data: dict[str, str] = one(rendered, "ConfigMap", "payments-service")["data"]
    return data


def _secret_variables(container: Doc) -> dict[str, str]:
    """The variables the container takes from Secrets, with stand-in values of the right shape."""
    names = [e["name"] for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})]
    return {name: "whsec_stand_in" if name == "PAYMENTS_STRIPE_WEBHOOK_SECRETS" else "stand-in" for name in names}


def _settings(rendered: list[Doc]) -> Settings:
    """What `payments serve` in the Deployment's container runs with (ConfigError if it would refuse)."""
    _, container = _server(rendered)
    return Settings.from_env({**_config(rendered), **_secret_variables(container)})


def _server(rendered: list[Doc]) -> tuple[Doc, Doc]:
    deployment = one(rendered, "Deployment", "payments-service")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return pod, container


def test_the_configmap_is_a_configuration_the_service_accepts(rendered: list[Doc]) -> None:
    """Settings.from_env raises ConfigError on a bad address or a missing pair, as `payments serve` would."""
    _, container = _server(rendered)
    secrets = _secret_variables(container)
    needed = {"PAYMENTS_DATABASE_URL", "PAYMENTS_STRIPE_API_KEY", "PAYMENTS_STRIPE_WEBHOOK_SECRETS"}
    assert needed | {"PAYMENTS_BANK_API_TOKEN"} <= secrets.keys(), "a secret missing: the service would use a sandbox"
    settings = _settings(rendered)
    assert settings.tls_cert is not None
    assert settings.tls_client_ca is not None, "mutual TLS names the calling services"
    assert settings.health_listen is not None
    assert settings.metrics_listen is not None
    assert settings.bank_api_base, "without it the built-in bank sandbox would start"
    assert not any(key in _config(rendered) for key in secrets), "a secret in the ConfigMap"


def _port(address: str) -> int:
    return int(address.rpartition(":")[2])


def test_the_termination_grace_outlasts_the_shutdown_grace(rendered: list[Doc]) -> None:
    pod, container = _server(rendered)
    shutdown_grace = _settings(rendered).shutdown_grace_seconds + _settings(rendered).shutdown_drain_seconds
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > pre_stop + shutdown_grace + 5, (
        "SIGKILL would cut the drain short: terminationGracePeriodSeconds counts from the preStop hook"
    )


def test_the_probes_speak_grpc_health_to_the_plaintext_health_listener(rendered: list[Doc]) -> None:
    _, container = _server(rendered)
    health_port = _port(_settings(rendered).health_listen or "")
    assert {"name": "health", "containerPort": health_port} in container["ports"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == health_port, probe
    assert container["readinessProbe"]["grpc"]["service"] == "payments.v1.PaymentService"
    liveness = container["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] > _settings(rendered).shutdown_grace_seconds, (
        "a drain must not look like a dead process"
    )


def test_the_containers_run_as_non_root_on_a_read_only_root_filesystem(rendered: list[Doc]) -> None:
    for kind in ("Deployment", "Job"):
        pod = one(rendered, kind)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            assert "limits" in container["resources"]
            assert "requests" in container["resources"]
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            volumes = {v["name"]: v for v in pod["volumes"]}
            assert "emptyDir" in volumes[mounts["/tmp"]], "a writable /tmp on a read-only root"


def test_tls_comes_from_a_mounted_secret(rendered: list[Doc]) -> None:
    pod, container = _server(rendered)
    settings = _settings(rendered)
    volumes = {v["name"]: v for v in pod["volumes"]}
    for path in (settings.tls_cert, settings.tls_key, settings.tls_client_ca):
        assert path is not None
        (mount,) = [m for m in container["volumeMounts"] if str(path.parent) == m["mountPath"]]
        assert mount["readOnly"] is True
        assert "secret" in volumes[mount["name"]], f"{path} is not from a Secret"


def test_service_pdb_hpa_and_network_policy_reach_the_server_pods(rendered: list[Doc]) -> None:
    pod_labels = one(rendered, "Deployment")["spec"]["template"]["metadata"]["labels"]
    _, container = _server(rendered)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    settings = _settings(rendered)
    assert ports["grpc"] == _port(settings.listen)
    assert ports["metrics"] == _port(settings.metrics_listen or "")
    assert ports["webhooks"] == _port(settings.webhook_listen or "")

    def selects(selector: dict[str, str]) -> bool:
        return bool(selector) and selector.items() <= pod_labels.items()

    service = one(rendered, "Service", "payments-service")
    assert service["spec"]["clusterIP"] == "None", "headless: clients balance per call over every pod"
    for svc in (d for d in rendered if d["kind"] == "Service"):
        assert selects(svc["spec"]["selector"])
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in ports
    assert selects(one(rendered, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"])
    target = one(rendered, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "payments-service")
    policy = one(rendered, "NetworkPolicy")["spec"]
    assert selects(policy["podSelector"]["matchLabels"])
    admitted = {port["port"] for rule in policy["ingress"] for port in rule["ports"]}
    assert admitted == {ports["grpc"], ports["webhooks"], ports["metrics"]}


def test_the_migration_job_runs_payments_migrate_on_the_servers_database(rendered: list[Doc]) -> None:
    _, server = _server(rendered)
    job = one(rendered, "Job", "payments-migrate")["spec"]["template"]["spec"]
    (migrate,) = job["containers"]
    assert migrate["args"] == ["migrate"]
    assert migrate["image"] == server["image"]
    database = [e for e in server["env"] if e["name"] == "PAYMENTS_DATABASE_URL"]
    assert [e for e in migrate["env"] if e["name"] == "PAYMENTS_DATABASE_URL"] == database


# ------------------------------------------------------------------------------------------ Dockerfile


def _makefile_install() -> list[str]:
    """The recipe of the Makefile's $(STAMP) target (the install every `make` target depends on)."""
    text = (REPO / "Makefile").read_text()
    recipe = re.search(r"^\$\(STAMP\):.*\n((?:\t.*\n)+)", text, re.MULTILINE)
    assert recipe is not None
    lines = [line.strip() for line in recipe.group(1).splitlines()]
    return [line for line in lines if not line.startswith("@")]  # the version check and the stamp


def _dockerfile_stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        instruction, _, argument = line.strip().partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction.upper(), argument.strip()))
    return stages


def _normalized(command: str, python: str, venv: str) -> list[str]:
    """The words of a command with the interpreter as PYTHON and the venv's path as VENV."""
    return ["PYTHON" if w == python else w.replace(venv, "VENV") for w in shlex.split(command)]


def test_the_dockerfile_installs_as_the_makefile_does() -> None:
    """Same steps, same order, same pip flags, the same distributions (the client library, then the
    project); the only difference: the image installs them as they are (`./client .`), the Makefile
    editable and with the dev extra."""
    make = [_normalized(c.replace("$(BIN)", "$(VENV)/bin"), "$(PYTHON)", "$(VENV)") for c in _makefile_install()]
    build, _runtime = _dockerfile_stages()
    runs = [argument for instruction, argument in build if instruction == "RUN"]
    image = [_normalized(run, "python", "/opt/venv") for run in runs if "compileall" not in run]
    assert make[-1][-4:] == ["-e", "./client", "-e", ".[dev]"]
    assert image[-1][-2:] == ["./client", "."]
    assert image[:-1] == make[:-1]
    assert image[-1] == [*[token for token in make[-1] if token != "-e"][:-1], "."]


def test_the_image_runs_payments_serve_as_the_manifests_expect(rendered: list[Doc]) -> None:
    _, runtime = _dockerfile_stages()
    instructions = dict(runtime)
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert instructions["ENTRYPOINT"] == '["payments"]'
    assert "payments" in scripts
    assert instructions["CMD"] == '["serve"]'
    pod, container = _server(rendered)
    assert instructions["USER"] == f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}"
    assert {int(p) for p in instructions["EXPOSE"].split()} == {p["containerPort"] for p in container["ports"]}
    assert "AS build" in _dockerfile_stages()[0][0][1]
    assert not any(i == "RUN" and "pip" in a for i, a in runtime), "the runtime stage installs nothing"


def test_the_image_copies_every_package_pyproject_installs() -> None:
    copied = {argument.split()[0] for instruction, argument in _dockerfile_stages()[0] if instruction == "COPY"}
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    roots = {package.split(".")[0] for package in setuptools["packages"]}
    sources = {setuptools.get("package-dir", {}).get(root, root).split("/")[0] for root in roots}
    # The generated code ships in the client library (client/src/payments links to generated/payments).
    assert sources | {"pyproject.toml", "client", "generated"} == copied
