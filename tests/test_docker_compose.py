"""docker-compose.yml and its Dockerfiles (Docker cannot run here: check the files)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_ports_and_healthchecks():
    services = compose()["services"]
    assert set(services) == {"cpu", "gpu"}
    assert "profiles" not in services["cpu"], "cpu is the default service"
    assert services["gpu"]["profiles"] == ["gpu"]
    host_ports = []
    for service in services.values():
        host, container = service["ports"][0].split(":")
        assert container == "8000"
        host_ports.append(host)
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD" and "http://127.0.0.1:8000/health" in " ".join(test)
    assert len(set(host_ports)) == 2


def test_gpu_reserves_an_nvidia_device_and_caches_engines():
    config = compose()
    gpu = config["services"]["gpu"]
    device = gpu["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    volume, mount = gpu["volumes"][0].split(":")
    assert volume in config["volumes"] and mount == gpu["environment"]["COARSE_LOFTR_CACHE"]


def test_dockerfiles_build_what_the_services_run():
    for name, service in compose()["services"].items():
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
            assert key.startswith("COARSE_LOFTR_")
            name = key.removeprefix("COARSE_LOFTR_").lower()
            if name == "cache":  # read by inference.weights, not a service setting
                continue
            monkeypatch.setenv(key, value)
            assert str(getattr(ServiceSettings(), name)) == value, key
