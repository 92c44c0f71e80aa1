"""The client distribution stands alone: httpx its only dependency, nothing of the service
(app/, training/, modelrepo/, TensorFlow) imported, typed, with its console script."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from tests.support import REPO
from tests.support.imports import imported_top_levels

CLIENT = REPO / "client"
SOURCES = CLIENT / "src" / "xor_client"


def test_httpx_is_the_only_dependency() -> None:
    project = tomllib.loads((CLIENT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "xor-client"
    assert project["dependencies"] == ["httpx>=0.27,<1"]
    assert "optional-dependencies" not in project
    assert project["scripts"] == {"xor-predict": "xor_client.cli:main"}


def test_the_sources_import_only_the_standard_library_and_httpx() -> None:
    files = sorted(SOURCES.rglob("*.py"))
    assert len(files) >= 5
    allowed = set(sys.stdlib_module_names) | {"httpx", "xor_client"}
    outside = {
        f"{file.relative_to(REPO)} imports {name}"
        for file in files
        for name in imported_top_levels(file) - allowed
    }
    assert outside == set()


def test_importing_the_client_and_its_cli_loads_nothing_of_the_service() -> None:
    code = (
        "import sys, xor_client, xor_client.cli\n"
        "heavy = {'tensorflow', 'keras', 'numpy', 'app', 'training', 'modelrepo', 'xorlog'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd="/", capture_output=True, text=True, check=True
    )
    assert result.stdout == "[]\n"


def test_the_wheel_holds_the_package_its_type_marker_and_console_script(tmp_path: Path) -> None:
    # Built from a copy: setuptools leaves build/ and *.egg-info beside the sources.
    source = tmp_path / "client"
    shutil.copytree(CLIENT, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(tmp_path), str(source)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("xor_client-0.1.0-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = archive.read(entry_points).decode()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        requires = [
            line
            for line in archive.read(metadata).decode().splitlines()
            if line.startswith("Requires-Dist:")
        ]
    assert "xor_client/py.typed" in names
    assert {n for n in names if n.startswith("xor_client/")} >= {
        f"xor_client/{p.name}" for p in SOURCES.glob("*.py")
    }
    assert not any(n.startswith(("app/", "training/", "modelrepo/", "tests/")) for n in names)
    assert "xor-predict = xor_client.cli:main" in scripts
    assert requires == ["Requires-Dist: httpx<1,>=0.27"]
