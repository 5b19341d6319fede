"""docker-compose.yml and its Dockerfiles (Docker cannot run here: check the files)."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


# The services that answer HTTP (the Ray workers only hold replicas).
SERVING = ("cpu", "gpu", "ray-head")


def test_services_ports_and_healthchecks():
    services = compose()["services"]
    assert set(services) == {*SERVING, "ray-worker", "prometheus"}
    assert "profiles" not in services["cpu"], "cpu is the default service"
    assert services["gpu"]["profiles"] == ["gpu"]
    assert services["ray-head"]["profiles"] == services["ray-worker"]["profiles"] == ["ray"]
    host_ports = []
    for name in SERVING:
        service = services[name]
        host, container = service["ports"][0].split(":")
        assert container == "8000"
        host_ports.append(host)
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD" and "http://127.0.0.1:8000/health" in " ".join(test)
    assert len(set(host_ports)) == len(SERVING)
    assert "ports" not in services["ray-worker"]


def test_ray_workers_join_the_head_that_serves_on_ray():
    services = compose()["services"]
    head, worker = services["ray-head"], services["ray-worker"]
    dockerfile = (ROOT / head["build"]["context"] / head["build"]["dockerfile"]).read_text()
    assert 'pip install ".[distributed]"' in dockerfile
    command = re.search(r"^CMD (\[.*\])", dockerfile, re.M).group(1)
    assert '"--ray", "--ray-address", "auto"' in command  # joins the head the entrypoint started
    entrypoint = re.search(r'^ENTRYPOINT \["(\S+)"\]', dockerfile, re.M).group(1)
    script = (ROOT / "docker" / "ray-head.sh").read_text()
    assert f"/usr/local/bin/{entrypoint}" in dockerfile and "ray start --head --port=6379" in script
    assert script.rstrip().endswith('exec coarse-loftr "$@"')  # the server gets the container's SIGTERM
    assert worker["image"] == head["image"] and worker["depends_on"] == ["ray-head"]
    assert worker["entrypoint"][:3] == ["ray", "start", "--address=ray-head:6379"]
    assert "--block" in worker["entrypoint"]
    for service in (head, worker):  # one shared token from the environment, none in the file
        assert service["environment"]["RAY_AUTH_TOKEN"] == "${RAY_AUTH_TOKEN:-}"
        assert service["shm_size"]
    assert ': "${RAY_AUTH_TOKEN:?' in script  # the head refuses to start without one
    # The options the image passes are options of `serve`.
    from coarse_loftr.commands import serve

    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    args = parser.parse_args(json.loads(command)[1:])
    assert args.ray and args.ray_address == "auto" and args.replicas == 2


def test_gpu_reserves_an_nvidia_device_and_caches_engines():
    config = compose()
    gpu = config["services"]["gpu"]
    device = gpu["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    volume, mount = gpu["volumes"][0].split(":")
    assert volume in config["volumes"] and mount == gpu["environment"]["COARSE_LOFTR_CACHE"]


def test_dockerfiles_build_what_the_services_run():
    for name, service in compose()["services"].items():
        if "build" not in service:  # the Ray workers run the head's image
            continue
        dockerfile = ROOT / service["build"]["context"] / service["build"]["dockerfile"]
        text = dockerfile.read_text()
        base = re.search(r"^FROM (\S+)", text, re.M).group(1)
        assert ("tensorrt" in base) == (name == "gpu")
        for source in re.findall(r"^COPY (\S+)", text, re.M):
            assert (ROOT / source).exists(), f"{dockerfile.name} copies missing {source}"
        command = re.search(r"^CMD (\[.*\])", text, re.M).group(1)
        assert '"serve"' in command and '"0.0.0.0"' in command and '"8000"' in command
        assert f'"--backend", "{"tensorrt" if name == "gpu" else "onnxruntime"}"' in command


def test_environment_overrides_are_service_settings(monkeypatch):
    from coarse_loftr.api import ServiceSettings

    for service in compose()["services"].values():
        for key, value in service.get("environment", {}).items():
            if key.startswith("RAY_"):  # Ray's own variables (ray-head, ray-worker)
                continue
            assert key.startswith("COARSE_LOFTR_")
            name = key.removeprefix("COARSE_LOFTR_").lower()
            if name == "cache":  # read by inference.weights, not a service setting
                continue
            monkeypatch.setenv(key, value)
            assert str(getattr(ServiceSettings(), name)) == value, key


def test_prometheus_profile_scrapes_the_metrics_route():
    from coarse_loftr.api import metrics

    services = compose()["services"]
    prometheus = services["prometheus"]
    assert prometheus["profiles"] == ["prometheus"] and prometheus["depends_on"] == ["cpu"]
    source, target, mode = prometheus["volumes"][0].split(":")
    assert target == "/etc/prometheus/prometheus.yml" and mode == "ro"
    config = yaml.safe_load((ROOT / source).read_text())
    (job,) = config["scrape_configs"]
    host, port = job["static_configs"][0]["targets"][0].split(":")
    assert host == "cpu" and port == services["cpu"]["ports"][0].split(":")[1]
    assert job["metrics_path"] in {route.path for route in metrics.router.routes}
