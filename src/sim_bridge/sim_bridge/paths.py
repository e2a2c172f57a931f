"""Where the installed configs live (share/sim_bridge/config), or the source tree's when not installed."""

from __future__ import annotations

from pathlib import Path


def config_dir() -> Path:
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:  # pragma: no cover - ament_index ships with every ROS install and the lock
        return Path(__file__).resolve().parents[3] / "config"
    try:
        return Path(get_package_share_directory("sim_bridge"), "config")
    except PackageNotFoundError:
        return Path(__file__).resolve().parents[3] / "config"
