"""deploy/kubernetes: every overlay renders with `kubectl kustomize` and every rendered manifest is valid against
the Kubernetes schemas (kubernetes-validate); the gateway's probes, termination, security context, autoscaling,
disruption budget and 90/10 canary are what the code and the issue need."""

from __future__ import annotations

import fnmatch
from typing import Any

import yaml

from tests.deploy.conftest import KUBERNETES, by_kind, load_yaml, run, tool

KUBERNETES_VERSION = "1.32.0"  # deploy/terraform's default EKS version


def graceful_timeout() -> int:
    from serving.server import GRACEFUL_TIMEOUT_S

    return GRACEFUL_TIMEOUT_S


def test_every_rendered_manifest_is_valid(rendered: dict[str, list[dict[str, Any]]], tmp_path) -> None:
    validator = tool("kubernetes-validate")
    templates = [load_yaml(KUBERNETES / "base" / "secrets.example.yaml")]
    for name, manifests in {**rendered, "secret-template": templates}.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump_all(manifests))
        result = run(validator, "--strict", "--kubernetes-version", KUBERNETES_VERSION, str(path))
        assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"
        assert result.stdout.count(" passed for resource ") == len(manifests), result.stdout


def test_overlays_deploy_the_gateway_and_mlflow_into_their_namespace(rendered) -> None:
    assert set(rendered) == {"production", "staging"}
    for overlay, manifests in rendered.items():
        namespaces = {doc["metadata"].get("namespace") for doc in manifests if doc["kind"] != "Namespace"}
        assert len(namespaces) == 1, overlay
        assert {"gateway", "mlflow"} <= set(by_kind(manifests, "Deployment"))
        assert not by_kind(manifests, "Secret"), "secrets are created out of band, never rendered from the repository"


def test_the_gateway_pod_probes_terminates_and_runs_as_the_code_needs(rendered) -> None:
    for manifests in rendered.values():
        for name, deployment in by_kind(manifests, "Deployment").items():
            if not name.startswith("gateway"):
                continue
            pod = deployment["spec"]["template"]["spec"]
            (container,) = pod["containers"]
            assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
            assert container["livenessProbe"]["httpGet"]["path"] == "/health"
            pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
            assert pod["terminationGracePeriodSeconds"] > graceful_timeout() + pre_stop
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["resources"]["requests"] and container["resources"]["limits"]
            # Writable places the gateway needs under a read-only root: /tmp, the model cache, the metrics folder.
            mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
            config = by_kind(manifests, "ConfigMap")["gateway-config"]["data"]
            for folder in (config["SERVING_MODEL_CACHE_DIR"], config["PROMETHEUS_MULTIPROC_DIR"]):
                # prometheus' folder is removed and re-created at start: it must be below its mount, not one.
                assert any(folder.startswith(mount + "/") for mount in mounts), folder
            port = int(config["SERVING_BIND"].rsplit(":", 1)[1])
            assert container["ports"][0]["containerPort"] == port


def test_production_has_an_hpa_a_pdb_and_a_90_10_canary_of_the_gateway(rendered) -> None:
    manifests = rendered["production"]
    hpa = by_kind(manifests, "HorizontalPodAutoscaler")["gateway"]
    assert hpa["apiVersion"] == "autoscaling/v2" and hpa["spec"]["scaleTargetRef"]["name"] == "gateway"
    pdb = by_kind(manifests, "PodDisruptionBudget")["gateway"]
    assert pdb["apiVersion"] == "policy/v1"
    deployments = by_kind(manifests, "Deployment")
    assert pdb["spec"]["selector"]["matchLabels"] == deployments["gateway"]["spec"]["selector"]["matchLabels"]
    ingresses = by_kind(manifests, "Ingress")
    stable, canary = ingresses["gateway"], ingresses["gateway-canary"]
    annotations = canary["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/canary"] == "true"
    assert int(annotations["nginx.ingress.kubernetes.io/canary-weight"]) == 10
    assert "nginx.ingress.kubernetes.io/canary" not in stable["metadata"].get("annotations", {})
    assert stable["spec"]["rules"][0]["host"] == canary["spec"]["rules"][0]["host"]
    services = by_kind(manifests, "Service")
    for ingress, service in ((stable, "gateway"), (canary, "gateway-canary")):
        assert ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == service
        # Each Service selects exactly its Deployment's pods: stable and canary never mix.
        selector = services[service]["spec"]["selector"]
        labels = deployments[service]["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items()
        other = deployments["gateway-canary" if service == "gateway" else "gateway"]["spec"]["template"]["metadata"]
        assert not selector.items() <= other["labels"].items()
    assert deployments["gateway-canary"]["spec"]["replicas"] == 1
    assert "gateway-canary" not in by_kind(rendered["staging"], "Deployment")


def test_hpa_managed_deployments_leave_replicas_to_the_hpa(rendered) -> None:
    # A replicas field would reset the HPA's scale on every `kubectl apply`.
    for overlay, manifests in rendered.items():
        deployments = by_kind(manifests, "Deployment")
        for hpa in by_kind(manifests, "HorizontalPodAutoscaler").values():
            target = deployments[hpa["spec"]["scaleTargetRef"]["name"]]
            assert "replicas" not in target["spec"], f"{overlay}: {target['metadata']['name']} sets replicas"


def test_mlflow_runs_without_its_job_runner_and_accepts_scrapes(rendered) -> None:
    for overlay, manifests in rendered.items():
        container = by_kind(manifests, "Deployment")["mlflow"]["spec"]["template"]["spec"]["containers"][0]
        env = {item["name"]: item.get("value") for item in container["env"]}
        assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false", overlay
        hosts = by_kind(manifests, "ConfigMap")["mlflow-config"]["data"]["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
        # Prometheus scrapes by pod IP (the Host header): MLflow exempts only /health and /version from its check.
        assert any(fnmatch.fnmatch("10.40.3.17:5000", pattern) for pattern in hosts), overlay
        policy = by_kind(manifests, "NetworkPolicy")["mlflow"]["spec"]["ingress"][0]["from"]
        namespaces = [p["namespaceSelector"]["matchLabels"] for p in policy if "namespaceSelector" in p]
        assert {"kubernetes.io/metadata.name": "amazon-cloudwatch"} in namespaces, overlay


def test_the_gateway_takes_its_api_keys_from_the_secret_and_serves_metrics_to_the_monitoring_namespace_only(
    rendered,
) -> None:
    template = load_yaml(KUBERNETES / "base" / "secrets.example.yaml")
    assert template["stringData"]["SERVING_API_KEYS"] == ""
    for overlay, manifests in rendered.items():
        config = by_kind(manifests, "ConfigMap")["gateway-config"]["data"]
        metrics_port = int(config["SERVING_METRICS_BIND"].rsplit(":", 1)[1])
        assert metrics_port != int(config["SERVING_BIND"].rsplit(":", 1)[1])
        for name, deployment in by_kind(manifests, "Deployment").items():
            if not name.startswith("gateway"):
                continue
            template_spec = deployment["spec"]["template"]
            (container,) = template_spec["spec"]["containers"]
            keys = {item["name"]: item for item in container["env"]}["SERVING_API_KEYS"]
            assert keys["valueFrom"]["secretKeyRef"] == {"name": "credit-scoring-secrets", "key": "SERVING_API_KEYS"}
            ports = {port["name"]: port["containerPort"] for port in container["ports"]}
            assert ports["metrics"] == metrics_port, overlay
            assert template_spec["metadata"]["annotations"]["prometheus.io/port"] == str(metrics_port)
        for service in (s for n, s in by_kind(manifests, "Service").items() if n.startswith("gateway")):
            assert metrics_port not in {port["port"] for port in service["spec"]["ports"]}  # not via the ingress
        rules = by_kind(manifests, "NetworkPolicy")["gateway"]["spec"]["ingress"]
        reaching_metrics = [rule for rule in rules if metrics_port in {port["port"] for port in rule["ports"]}]
        monitoring = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "amazon-cloudwatch"}}}]
        assert reaching_metrics and all(rule.get("from") == monitoring for rule in reaching_metrics), overlay


def test_mlflow_signs_everyone_in_and_a_job_provisions_the_service_users(rendered) -> None:
    from registry.access import USERS

    for overlay, manifests in rendered.items():
        mlflow = by_kind(manifests, "Deployment")["mlflow"]["spec"]["template"]["spec"]
        server = mlflow["containers"][0]
        assert "--app-name=basic-auth" in server["args"], overlay
        env = {item["name"]: item for item in server["env"]}
        for name in ("MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"):
            assert env[name]["valueFrom"]["secretKeyRef"]["key"] == name, (overlay, name)
        # The ini names the auth database with its password: a file from the Secret, read-only.
        mounts = {mount["name"]: mount for mount in server["volumeMounts"]}
        config = env["MLFLOW_AUTH_CONFIG_PATH"]["value"]
        assert config.startswith(mounts["auth-config"]["mountPath"] + "/") and mounts["auth-config"]["readOnly"]
        secret = {volume["name"]: volume for volume in mlflow["volumes"]}["auth-config"]["secret"]
        assert secret["items"] == [{"key": "MLFLOW_AUTH_INI", "path": config.rsplit("/", 1)[1]}]
        job = by_kind(manifests, "Job")["mlflow-access"]
        assert job["spec"]["ttlSecondsAfterFinished"] > 0  # so that the next apply runs it again
        container = job["spec"]["template"]["spec"]["containers"][0]
        assert container["command"] == ["python", "-m", "registry.access"]
        job_env = {item["name"]: item for item in container["env"]}
        assert job_env["MLFLOW_TRACKING_USERNAME"]["value"] == "admin"
        assert job_env["MLFLOW_TRACKING_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "MLFLOW_AUTH_ADMIN_PASSWORD"
        for user in USERS:
            key = f"MLFLOW_{user.upper()}_PASSWORD"
            assert job_env[key]["valueFrom"]["secretKeyRef"]["key"] == key, (overlay, key)
        for name, deployment in by_kind(manifests, "Deployment").items():
            if name.startswith("gateway"):
                containers = deployment["spec"]["template"]["spec"]["containers"]
                gateway = {item["name"]: item for item in containers[0]["env"]}
                assert gateway["MLFLOW_TRACKING_USERNAME"]["value"] == "gateway", (overlay, name)
                password = gateway["MLFLOW_TRACKING_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"]
                assert password == "MLFLOW_GATEWAY_PASSWORD", (overlay, name)
    template = load_yaml(KUBERNETES / "base" / "secrets.example.yaml")["stringData"]
    assert {f"MLFLOW_{user.upper()}_PASSWORD" for user in USERS} | {"MLFLOW_AUTH_INI"} <= set(template)
