"""The Helm chart (deploy/helm/gatehouse): lint it, render it with helm template for the default values
and for value sets that turn on its optional parts, check every manifest against the Kubernetes schemas
(kubernetes-validate, offline, unknown fields are errors), and check what an operator relies on."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "deploy" / "helm" / "gatehouse"
# `make test` installs it into the venv (pyproject.toml's dev extras: helm-binary).
HELM = Path(sys.executable).parent / "helm"
RELEASE, NAMESPACE = "gatehouse", "gatehouse-test"
# Rendered for this version and checked against its schemas; most value sets also for the oldest version
# Chart.yaml accepts and the newest kubernetes-validate knows.
KUBE_VERSION = "1.32.0"
OTHER_KUBE_VERSIONS = ("1.25.0", kubernetes_validate.latest_version())

COMPONENTS = ("web", "worker", "batch-worker", "beat", "migrate")
SETTINGS = (ROOT / "portal" / "settings.py").read_text()
SECRET_NAME = "test-gatehouse-secrets"
# Variables that only ever come from the Secret.
REQUIRED_SECRETS = ("SECRET_KEY", "DATABASE_URL", "REDIS_URL")
SECRET_ENV = {*REQUIRED_SECRETS, "CELERY_BROKER_URL", "CHANNEL_LAYER_REDIS_URL", "METRICS_TOKEN", "OIDC_RP_CLIENT_SECRET",
              "BATCH_FILES_S3_ACCESS_KEY_ID", "BATCH_FILES_S3_SECRET_ACCESS_KEY"}

VALUE_SETS = {
    "defaults": None,
    "ingress": {
        "existingSecret": SECRET_NAME,
        "web": {"replicaCount": 4, "streamDrainSeconds": 300},
        "podDisruptionBudget": {"minAvailable": 2},
        "config": {"ALLOWED_HOSTS": "gatehouse.example.org", "SITE_URL": "https://gatehouse.example.org",
                   "OLLAMA_NODES": "http://gpu1:11434,http://gpu2:11434"},
        "ingress": {"enabled": True, "className": "nginx",
                    "hosts": [{"host": "gatehouse.example.org", "paths": [{"path": "/", "pathType": "Prefix"}]},
                              {"host": "*.gatehouse.example.org", "paths": [{"path": "/"}]}],
                    "tls": [{"secretName": "gatehouse-tls", "hosts": ["gatehouse.example.org"]}]},
    },
    "autoscaled": {
        "existingSecret": SECRET_NAME,
        "autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 12, "targetAverageValue": 20,
                        "metricSelector": {"service": "gatehouse-web"}},
    },
    "s3": {
        "existingSecret": SECRET_NAME,
        "secretKeys": {"DATABASE_URL": "uri"},
        "batchFiles": {"s3": {"bucket": "gatehouse-batches", "endpointUrl": "http://minio.minio:9000",
                              "region": "eu-west-1"}},
        "config": {"CELERY_BROKER_SENTINEL_MASTER": "celery"},
        "worker": {"replicaCount": 2, "concurrency": 4},
    },
}


def helm(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    assert HELM.exists(), f"{HELM} is missing: `make test` installs it (pyproject.toml's dev extras, helm-binary)"
    # Helm's cache, configuration and data in the test's own directory, never the home directory.
    env = {"PATH": "/usr/bin:/bin", "HELM_CACHE_HOME": str(tmp / "cache"), "HELM_CONFIG_HOME": str(tmp / "config"),
           "HELM_DATA_HOME": str(tmp / "data")}
    return subprocess.run([str(HELM), *args], env=env, capture_output=True, text=True, timeout=60)


def values_args(name: str, tmp: Path) -> list[str]:
    if VALUE_SETS[name] is None:
        return []
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(VALUE_SETS[name]))
    return ["--values", str(path)]


def render(name: str, tmp: Path, kube_version: str = KUBE_VERSION) -> list[dict]:
    result = helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version", kube_version,
                  *values_args(name, tmp), tmp=tmp)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("helm")


@pytest.fixture(scope="module")
def rendered(tmp) -> dict[str, list[dict]]:
    return {name: render(name, tmp) for name in VALUE_SETS}


# -- helpers over rendered documents -------------------------------------------------------------------

def find(docs: list[dict], kind: str, component: str | None = None) -> list[dict]:
    return [doc for doc in docs if doc["kind"] == kind
            and (component is None or doc["metadata"]["labels"]["app.kubernetes.io/component"] == component)]


def one(docs: list[dict], kind: str, component: str | None = None) -> dict:
    found = find(docs, kind, component)
    assert len(found) == 1, f"{len(found)} {kind} for {component}"
    return found[0]


def workloads(docs: list[dict]) -> list[dict]:
    return [doc for doc in docs if doc["kind"] in ("Deployment", "Job")]


def pod_spec(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def container(docs: list[dict], component: str) -> dict:
    kind = "Job" if component == "migrate" else "Deployment"
    (only,) = pod_spec(one(docs, kind, component))["containers"]
    return only


def command(docs: list[dict], component: str) -> str:
    return " ".join(container(docs, component)["command"])


def environment(docs: list[dict], component: str) -> dict[str, object]:
    """Each variable a container gets: its value (from the ConfigMap or inline) or its secretKeyRef."""
    spec = container(docs, component)
    configmaps = {doc["metadata"]["name"]: doc for doc in find(docs, "ConfigMap")}
    env: dict[str, object] = {}
    for source in spec.get("envFrom", []):
        env.update(configmaps[source["configMapRef"]["name"]]["data"])
    for entry in spec.get("env", []):
        env[entry["name"]] = entry["value"] if "value" in entry else entry["valueFrom"]["secretKeyRef"]
    return env


def values_of(name: str) -> dict:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())

    def merge(base: dict, override: dict) -> dict:
        return {**base, **{key: merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict)
                           else value for key, value in override.items()}}
    return merge(defaults, VALUE_SETS[name] or {})


# -- the chart is valid -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", VALUE_SETS)
def test_helm_lint_passes(name, tmp):
    result = helm("lint", str(CHART), "--strict", "--kube-version", KUBE_VERSION, *values_args(name, tmp), tmp=tmp)
    assert result.returncode == 0, result.stdout + result.stderr


def validate(docs: list[dict], kube_version: str) -> None:
    # The chart renders no custom resource (a ServiceMonitor would need its CRD): a kind without a schema
    # in kubernetes-validate fails the test.
    problems = []
    for doc in docs:
        where = f"{doc['kind']} {doc['metadata']['name']} (Kubernetes {kube_version})"
        try:
            kubernetes_validate.validate(doc, kube_version, strict=True)
        except kubernetes_validate.ValidationError as error:
            problems.append(f"{where}: {error.message} at {'.'.join(map(str, error.path))}")
        except kubernetes_validate.SchemaNotFoundError as error:
            problems.append(f"{where}: {error.message}")
    assert not problems, "\n".join(problems)


def test_every_rendered_manifest_matches_the_kubernetes_schemas(rendered):
    for docs in rendered.values():
        validate(docs, KUBE_VERSION)


@pytest.mark.parametrize("kube_version", OTHER_KUBE_VERSIONS)
def test_the_chart_renders_valid_manifests_for_the_oldest_and_newest_kubernetes(kube_version, tmp):
    for name in ("defaults", "ingress", "autoscaled"):
        validate(render(name, tmp, kube_version), kube_version)


def test_each_value_set_renders_what_it_turns_on(rendered):
    kinds = {name: sorted(doc["kind"] for doc in docs) for name, docs in rendered.items()}
    core = ["ConfigMap", "ConfigMap", "Deployment", "Deployment", "Deployment", "Deployment", "Job",
            "PodDisruptionBudget", "Service"]
    assert kinds["defaults"] == sorted([*core, "PersistentVolumeClaim"])
    assert kinds["ingress"] == sorted([*core, "PersistentVolumeClaim", "Ingress"])
    assert kinds["autoscaled"] == sorted([*core, "PersistentVolumeClaim", "HorizontalPodAutoscaler"])
    assert kinds["s3"] == sorted(core)


def test_every_resource_carries_the_standard_labels_and_selectors_stay_stable(rendered):
    for docs in rendered.values():
        for doc in docs:
            labels = doc["metadata"]["labels"]
            for key in ("name", "instance", "component", "version"):
                assert labels.get(f"app.kubernetes.io/{key}"), f"{doc['kind']} {doc['metadata']['name']} lacks {key}"
            assert doc["metadata"]["namespace"] == NAMESPACE
        for workload in workloads(docs):
            template_labels = workload["spec"]["template"]["metadata"]["labels"]
            if workload["kind"] == "Deployment":
                selector = workload["spec"]["selector"]["matchLabels"]
                # Labels that change with an upgrade would make the selector (immutable) differ.
                assert set(selector) == {"app.kubernetes.io/name", "app.kubernetes.io/instance",
                                         "app.kubernetes.io/component"}
                assert selector.items() <= template_labels.items()
    assert {doc["metadata"]["labels"]["app.kubernetes.io/component"] for doc in workloads(rendered["defaults"])} == set(COMPONENTS)


# -- the processes --------------------------------------------------------------------------------------

def test_each_process_runs_the_command_compose_runs(rendered):
    for docs in rendered.values():
        assert command(docs, "web") == "python -m portal.web -b 0.0.0.0 -p 8000 --proxy-headers"
        assert command(docs, "batch-worker") == "celery -A portal worker --loglevel=INFO -Q batches --pool=solo -n batches@%h"
        assert command(docs, "beat") == "celery -A portal beat --loglevel=INFO --schedule /tmp/celerybeat-schedule"
        assert command(docs, "migrate") == "python manage.py migrate --noinput"
        images = {c["image"] for w in workloads(docs) for c in pod_spec(w)["containers"]}
        assert images == {"gatehouse:0.1.0"}, "one image for every process"
    assert command(rendered["defaults"], "worker") == "celery -A portal worker --loglevel=INFO --concurrency=2"
    assert command(rendered["s3"], "worker").endswith("--concurrency=4")
    assert one(rendered["s3"], "Deployment", "worker")["spec"]["replicas"] == 2


def test_the_web_deployment_runs_n_replicas_ready_only_while_the_database_and_redis_answer(rendered):
    assert one(rendered["defaults"], "Deployment", "web")["spec"]["replicas"] == 2
    assert one(rendered["ingress"], "Deployment", "web")["spec"]["replicas"] == 4
    for docs in rendered.values():
        web = container(docs, "web")
        readiness = web["readinessProbe"]["httpGet"]
        assert readiness["path"] == "/healthz" and readiness["port"] == "http"
        (host,) = [header["value"] for header in readiness["httpHeaders"] if header["name"] == "Host"]
        # Django refuses a Host outside ALLOWED_HOSTS, and the probe would never pass.
        assert host in environment(docs, "web")["ALLOWED_HOSTS"].split(",")
        # An outage of the database or Redis must not restart the pods: liveness does not ask /healthz.
        for probe in ("livenessProbe", "startupProbe"):
            assert "httpGet" not in web[probe] and web[probe]["tcpSocket"]["port"] == "http"
        assert {"name": "http", "containerPort": 8000, "protocol": "TCP"} in web["ports"]
        assert "migrate" not in command(docs, "web"), "the migration hook migrates, never the web pods"
    assert 'path("healthz"' in (ROOT / "portal" / "urls.py").read_text()


def test_beat_runs_exactly_once(rendered):
    for docs in rendered.values():
        beat = one(docs, "Deployment", "beat")
        assert beat["spec"]["replicas"] == 1
        assert beat["spec"]["strategy"] == {"type": "Recreate"}, "an upgrade must not run two beats at once"


def test_the_migration_job_is_a_hook_before_install_and_upgrade(rendered):
    for docs in rendered.values():
        job = one(docs, "Job", "migrate")
        annotations = job["metadata"]["annotations"]
        assert set(annotations["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
        assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
        assert pod_spec(job)["restartPolicy"] == "Never"
        # A hook runs before the release's other resources exist: it may use none of them.
        created = {(doc["kind"], doc["metadata"]["name"]) for doc in docs
                   if "helm.sh/hook" not in doc["metadata"].get("annotations", {})}
        spec = pod_spec(job)
        used = {("ConfigMap", source["configMapRef"]["name"]) for source in spec["containers"][0].get("envFrom", [])}
        used |= {("ConfigMap", volume["configMap"]["name"]) for volume in spec["volumes"] if "configMap" in volume}
        used |= {("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
                 for volume in spec["volumes"] if "persistentVolumeClaim" in volume}
        assert not used & created, used & created
        # It gets the same settings as the long-running processes, inline.
        assert environment(docs, "migrate") == environment(docs, "worker")


def test_the_disruption_budget_and_the_service_select_the_web_pods_only(rendered):
    for docs in rendered.values():
        pods = {w["metadata"]["labels"]["app.kubernetes.io/component"]: w["spec"]["template"]["metadata"]["labels"]
                for w in workloads(docs)}
        for selector in (one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
                         one(docs, "Service")["spec"]["selector"]):
            chosen = {component for component, labels in pods.items() if selector.items() <= labels.items()}
            assert chosen == {"web"}, chosen
        assert one(docs, "Service")["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http",
                                                          "protocol": "TCP"}]
    assert one(rendered["defaults"], "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    budget = one(rendered["ingress"], "PodDisruptionBudget")["spec"]
    assert budget["minAvailable"] == 2 and "maxUnavailable" not in budget


def test_stopping_web_pods_leave_the_service_then_let_their_streams_finish(rendered):
    for name, docs in rendered.items():
        web = values_of(name)["web"]
        spec = pod_spec(one(docs, "Deployment", "web"))
        hook = spec["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
        settle, budget = float(hook[hook.index("--settle") + 1]), float(hook[hook.index("--budget") + 1])
        assert settle == web["preStopSleepSeconds"] > 0 and budget == web["streamDrainSeconds"]
        # After SIGTERM the web process drains for WEB_DRAIN_SECONDS: the grace period covers the hook and that.
        drain = float(values_of(name)["config"]["WEB_DRAIN_SECONDS"])
        assert spec["terminationGracePeriodSeconds"] >= settle + budget + drain + 2
    assert pod_spec(one(rendered["ingress"], "Deployment", "web"))["terminationGracePeriodSeconds"] >= 300


def test_the_prestop_hook_waits_for_open_connections_and_no_longer_than_its_budget(rendered, tmp):
    configmaps = {doc["metadata"]["name"]: doc for doc in find(rendered["defaults"], "ConfigMap")}
    (script,) = [data["wait-for-streams.py"] for data in (cm["data"] for cm in configmaps.values())
                 if "wait-for-streams.py" in data]
    path = tmp / "wait-for-streams.py"
    path.write_text(script)
    heading = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    listening = "   0: 00000000:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 1 1\n"
    elsewhere = "   1: 0100007F:1F41 0100007F:9C40 01 00000000:00000000 00:00000000 00000000   999        0 2 1\n"
    stream = "   2: 0A000005:1F40 0A000009:D431 01 00000000:00000000 00:00000000 00000000   999        0 3 1\n"
    idle, busy = tmp / "idle-tcp", tmp / "busy-tcp"
    idle.write_text(heading + listening + elsewhere)
    busy.write_text(heading + listening + elsewhere + stream)

    def wait(table: Path, budget: float) -> float:
        started = time.monotonic()
        result = subprocess.run([sys.executable, str(path), "--port", "8000", "--settle", "0", "--budget", str(budget),
                                 "--table", str(table), "--table", str(tmp / "no-such-table")],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return time.monotonic() - started

    assert wait(idle, budget=600) < 30, "no connection to the web port: SIGTERM at once"
    assert wait(busy, budget=0.5) >= 0.5, "a connection to the web port is waited for, up to the budget"


def test_the_autoscaler_scales_the_web_deployment_on_queue_depth(rendered):
    assert not find(rendered["defaults"], "HorizontalPodAutoscaler"), "off by default"
    docs = rendered["autoscaled"]
    hpa = one(docs, "HorizontalPodAutoscaler")["spec"]
    web = one(docs, "Deployment", "web")
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": web["metadata"]["name"]}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 12)
    (metric,) = hpa["metrics"]
    assert metric["type"] == "External"
    assert metric["external"]["metric"] == {"name": "gatehouse_queue_depth",
                                            "selector": {"matchLabels": {"service": "gatehouse-web"}}}
    assert metric["external"]["target"] == {"type": "AverageValue", "averageValue": "20"}
    assert '"gatehouse_queue_depth"' in (ROOT / "portal" / "metrics.py").read_text(), "the gauge /metrics serves"
    # The autoscaler owns the replica count: an upgrade must not reset it.
    assert "replicas" not in web["spec"]


def test_the_ingress_sends_everything_to_the_web_service_with_room_for_streams_and_uploads(rendered):
    docs = rendered["ingress"]
    ingress = one(docs, "Ingress")
    service = one(docs, "Service")["metadata"]["name"]
    assert ingress["spec"]["ingressClassName"] == "nginx"
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            assert path["backend"]["service"] == {"name": service, "port": {"name": "http"}}
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 1200  # queue + read timeouts
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == "210m"
    allowed = environment(docs, "web")["ALLOWED_HOSTS"].split(",")
    assert {"gatehouse.example.org", ".gatehouse.example.org", "127.0.0.1", f"{service}.{NAMESPACE}.svc"} <= set(allowed)


# -- configuration and secrets --------------------------------------------------------------------------

def test_every_variable_the_chart_sets_is_a_setting_gatehouse_reads(rendered):
    for name, docs in rendered.items():
        for component in COMPONENTS:
            for variable in environment(docs, component):
                assert f'"{variable}"' in SETTINGS, f"{name}: {component}'s {variable} is not read in portal/settings.py"


def test_the_chart_passes_every_variable_compose_passes(rendered):
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    wanted = set(compose["services"]["web"]["environment"])
    for docs in rendered.values():
        assert wanted <= set(environment(docs, "web")), wanted - set(environment(docs, "web"))


def test_secrets_come_from_the_named_secret_and_never_from_a_manifest(rendered):
    for name, docs in rendered.items():
        assert not find(docs, "Secret"), "the chart never writes a Secret"
        secret = SECRET_NAME if VALUE_SETS[name] else RELEASE  # by default, the release's full name
        keys = values_of(name)["secretKeys"]
        for component in COMPONENTS:
            env = environment(docs, component)
            for variable in SECRET_ENV & set(env):
                ref = env[variable]
                assert isinstance(ref, dict), f"{name}: {component} gets {variable} as a literal"
                assert ref["name"] == secret and ref["key"] == keys.get(variable, variable)
                assert ref.get("optional", False) == (variable not in REQUIRED_SECRETS)
            assert set(REQUIRED_SECRETS) <= set(env)
            s3 = {"BATCH_FILES_S3_ACCESS_KEY_ID", "BATCH_FILES_S3_SECRET_ACCESS_KEY"}
            assert (s3 <= set(env)) == (name == "s3")
            # Unset (no key in the Secret), CELERY_BROKER_URL falls back to REDIS_URL; set, a broker apart.
            assert env["CELERY_BROKER_URL"]["optional"] is True


@pytest.mark.parametrize("variable", ["SECRET_KEY", "DATABASE_URL", "METRICS_TOKEN"])
def test_a_secret_put_in_the_values_is_refused_and_not_echoed(variable, tmp):
    secret = f"do-not-render-{variable.lower()}-7f3a9c"
    result = helm("template", RELEASE, str(CHART), "--kube-version", KUBE_VERSION,
                  "--set-string", f"config.{variable}={secret}", tmp=tmp)
    assert result.returncode != 0 and f"config.{variable} is a secret" in result.stderr
    assert secret not in result.stdout + result.stderr


def test_a_change_of_configuration_rolls_every_pod(rendered):
    seen: dict[str, str] = {}  # ConfigMaps -> the checksum on the pods
    for docs in rendered.values():
        found = {d["spec"]["template"]["metadata"]["annotations"]["checksum/config"] for d in find(docs, "Deployment")}
        assert len(found) == 1 and re.fullmatch(r"[0-9a-f]{64}", min(found)), found
        seen[yaml.safe_dump([doc["data"] for doc in find(docs, "ConfigMap")])] = found.pop()
    assert len(seen) == 3, "the value sets make three configurations"  # autoscaling changes no setting
    assert len(set(seen.values())) == len(seen), "another configuration, another checksum"


# -- files and the read-only root filesystem -------------------------------------------------------------

def mounts(spec: dict) -> dict[str, str]:
    return {mount["mountPath"]: mount["name"] for mount in spec.get("volumeMounts", [])}


def test_the_containers_run_as_a_non_root_user_with_only_their_volumes_writable(rendered):
    for docs in rendered.values():
        for workload in workloads(docs):
            spec = pod_spec(workload)
            assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] > 0
            assert spec["automountServiceAccountToken"] is False
            for each in spec["containers"]:
                assert each["securityContext"]["readOnlyRootFilesystem"] is True
                assert each["securityContext"]["allowPrivilegeEscalation"] is False
                assert "/tmp" in mounts(each), "spooled request bodies and the beat schedule live in /tmp"
                assert each["resources"]["requests"] and each["resources"]["limits"]


def test_batch_files_are_shared_by_web_and_the_workers(rendered):
    docs = rendered["defaults"]
    claim = one(docs, "PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    for component in ("web", "worker", "batch-worker"):
        spec = pod_spec(one(docs, "Deployment", component))
        directory = environment(docs, component)["BATCH_FILES_DIR"]
        volume = mounts(spec["containers"][0])[directory]
        (source,) = [v for v in spec["volumes"] if v["name"] == volume]
        assert source["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    # With a bucket, the files live in S3 and no volume is needed.
    docs = rendered["s3"]
    assert not find(docs, "PersistentVolumeClaim")
    for component in ("web", "worker", "batch-worker"):
        env = environment(docs, component)
        assert env["BATCH_FILES_S3_BUCKET"] == "gatehouse-batches"
        assert env["BATCH_FILES_S3_ENDPOINT_URL"] == "http://minio.minio:9000" and "BATCH_FILES_DIR" not in env
        volumes = pod_spec(one(docs, "Deployment", component))["volumes"]
        assert not [v for v in volumes if "persistentVolumeClaim" in v]
