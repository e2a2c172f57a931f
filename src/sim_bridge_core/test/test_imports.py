"""sim_bridge_core must import without rclpy (only sim_bridge_core.ros needs it)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import sim_bridge_core


def test_core_imports_without_rclpy():
    modules = [
        m.name
        for m in pkgutil.walk_packages(sim_bridge_core.__path__, "sim_bridge_core.")
        if not m.name.startswith("sim_bridge_core.ros")
    ]
    assert "sim_bridge_core.simulator.core" in modules
    program = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('rclpy', 'rcl_interfaces'):\n"
        "            raise ImportError('rclpy is blocked in this test')\n"
        "sys.meta_path.insert(0, Block())\n"
        f"for name in {modules!r}:\n"
        "    __import__(name)\n"
    )
    subprocess.run([sys.executable, "-c", program], check=True)
