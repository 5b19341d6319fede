"""What a user installs: `pip install .` adds one import package, `coarse_loftr`, that
works from any directory: its modules import, its command runs, its page has its assets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import tomllib

from coarse_loftr.api import loadtest

ROOT = Path(__file__).resolve().parents[1]

#: Modules that need an optional extra which the test environment may lack.
OPTIONAL_DEPENDENCIES = {"tensorrt", "pycuda", "ray", "h5py", "pycolmap"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A regular (non-editable) install of the checkout into an empty folder."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(ROOT),
        ],
        check=True,
        env={**os.environ, "PIP_NO_WARN_SCRIPT_LOCATION": "1"},
    )
    return target


def run_python(target: Path, code: str, cwd: Path) -> subprocess.CompletedProcess:
    # The install first on the path, so the checkout's editable finder is never asked.
    env = {**os.environ, "PYTHONPATH": str(target)}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True)


def test_only_one_top_level_package(installed):
    names = {p.name for p in installed.iterdir()} - {"bin"}
    assert {n for n in names if not n.endswith(".dist-info")} == {"coarse_loftr"}
    (dist_info,) = (n for n in names if n.endswith(".dist-info"))
    top_level = installed / dist_info / "top_level.txt"
    if top_level.exists():
        assert top_level.read_text().split() == ["coarse_loftr"]


def test_every_module_imports_from_the_install(installed, tmp_path):
    """Each module by its installed name, from a directory with no checkout: a bare
    `import inference` anywhere would fail here."""
    code = f"""
import importlib, pkgutil, sys
import coarse_loftr
assert coarse_loftr.__file__.startswith({str(installed)!r}), coarse_loftr.__file__
failed = []
for info in pkgutil.walk_packages(coarse_loftr.__path__, "coarse_loftr."):
    if info.name.endswith("__main__"):
        continue
    try:
        importlib.import_module(info.name)
    except ModuleNotFoundError as error:
        if error.name.split(".")[0] not in {sorted(OPTIONAL_DEPENDENCIES)!r}:
            failed.append(f"{{info.name}}: {{error}}")
print(len(failed), "\\n".join(failed))
from coarse_loftr import Matcher, CoarseLoftrError
print(Matcher.__module__)
"""
    result = run_python(installed, code, tmp_path)
    assert result.returncode == 0, result.stderr
    count, *_ = result.stdout.split("\n", 1)
    assert count.split()[0] == "0", result.stdout
    assert "coarse_loftr.inference.matcher" in result.stdout


def test_package_list_covers_every_folder():
    """pyproject.toml names each package explicitly (the folders are mapped into
    coarse_loftr): a new subfolder with an __init__.py must be listed too."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    for name, folder in config["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            if "__pycache__" in init.parts:
                continue
            relative = init.parent.relative_to(ROOT / folder).parts
            assert ".".join((name, *relative)) in listed, (
                f"{init.parent} is not in [tool.setuptools] packages"
            )


def test_installed_command_serves_the_page_with_its_assets(installed, tmp_path):
    port = loadtest.free_port()
    env = {**os.environ, "PYTHONPATH": str(installed)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "coarse_loftr",
            "serve",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--threads",
            "1",
        ],
        cwd=tmp_path,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        loadtest.wait_healthy(url, process)
        page = httpx.get(f"{url}/", timeout=10)
        assert page.status_code == 200 and "<html" in page.text.lower()
        for asset, kind in (("static/app.js", "javascript"), ("static/style.css", "css")):
            assert asset in page.text
            answer = httpx.get(f"{url}/{asset}", timeout=10)
            assert answer.status_code == 200 and kind in answer.headers["content-type"], asset
    finally:
        process.terminate()
        process.wait(20)
