"""The image's install (`pip install ./client .`, deploy/Dockerfile) ships every module the tests run.

The tests run on the Makefile's editable install, which imports straight from the source tree; the
image installs a wheel, which holds only what pyproject.toml's package list and package data name. A
package added to the tree but not to that list passes every test and is missing from the image. This
builds the wheel the way the Dockerfile's build stage does, from only the paths it copies, and compares.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.support.processes import REPO


def _copied_paths() -> list[str]:
    """What the Dockerfile's build stage COPYs into its source directory."""
    text = (REPO / "deploy" / "Dockerfile").read_text()
    build_stage = text.split("\nFROM ")[1]
    return [match.split()[0] for match in re.findall(r"^COPY (?!--from)(.+)$", build_stage, re.MULTILINE)]


def _tracked(*paths: str) -> list[str]:
    out = subprocess.run(["git", "ls-files", *paths], cwd=REPO, capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_the_wheel_built_from_the_copied_sources_holds_every_module_and_migration(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    copied = _copied_paths()
    for path in copied:
        if (REPO / path).is_dir():
            shutil.copytree(REPO / path, source / path, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / path, source / path)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(tmp_path),
         str(source / "client"), str(source)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    (service,) = tmp_path.glob("payments_service-*.whl")
    (client,) = tmp_path.glob("payments_client-*.whl")
    shipped = set(zipfile.ZipFile(service).namelist()) | set(zipfile.ZipFile(client).namelist())
    packages = [path for path in copied if (REPO / path).is_dir()]
    needed = {
        # generated/payments is installed as the package payments (by the client library, whose
        # client/src/payments links to it), client/src/payments_client as payments_client.
        path.removeprefix("generated/").removeprefix("client/src/")
        for path in _tracked(*packages)
        if path.endswith((".py", ".sql")) and "/tests/" not in path and not path.startswith("client/examples/")
    }
    assert len(needed) > 100
    assert not needed - shipped, f"missing from the image: {sorted(needed - shipped)}"
    assert any(name.endswith(".dist-info/entry_points.txt") for name in shipped), "no `payments` command"
