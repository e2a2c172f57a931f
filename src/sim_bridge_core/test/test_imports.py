"""sim_bridge_core imports without rclpy (only sim_bridge_core.ros needs it), and its imports flow one
way: from jobs and bringup at the top down to config at the bottom."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

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


def test_bringup_describes_a_run_without_torch():
    """bringup and every launch file describe their nodes before anything runs; torch (1.5 s to
    import) is loaded by the jobs that train, evaluate or read a checkpoint, not to describe them."""
    program = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ImportError('torch is blocked in this test')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from sim_bridge_core.bringup.description import describe\n"
        "from pathlib import Path\n"
        f"config = Path({str(Path(__file__).resolve().parents[3] / 'config')!r})\n"
        "for job in ('training', 'sim', 'deploy', 'eval', 'excite', 'sysid'):\n"
        "    describe(job, {}, config)\n"
    )
    subprocess.run([sys.executable, "-c", program], check=True)


# The layers of sim_bridge_core, bottom first: a module imports only from its own layer or below.
LAYERS = (
    ("config", "arrays"),
    ("rendering",),
    ("models",),
    ("sim",),
    ("tasks",),
    ("randomization",),
    ("envs",),
    ("learning",),
    ("simulator",),
    ("deploy",),
    ("recording",),
    ("sysid",),
    ("ros",),
    ("jobs",),
    ("bringup",),
)
# Edges named for their own sake, so the reason reads beside the rule: package -> who may import it.
FORBIDDEN = {
    "bringup": ({"bringup"}, "bringup is the top: it describes nodes, and nothing may depend on it"),
    "jobs": ({"jobs", "bringup"}, "jobs run start to outputs: only bringup starts them"),
}
# It learns on worlds, knows nothing of deploying.
LEARNING_SEES = {"config", "arrays", "envs", "tasks", "learning"}


def _imports() -> dict[str, set[str]]:
    """For every module of sim_bridge_core, the sim_bridge_core modules it imports (at any depth of
    the file: imports inside functions count too)."""
    root = Path(sim_bridge_core.__path__[0])
    found = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            targets |= {n.removeprefix("sim_bridge_core.") for n in names if n.startswith("sim_bridge_core.")}
        found[module] = targets
    return found


def _package(module: str) -> str:
    return module.split(".")[0]


def test_every_package_has_a_layer():
    packages = {_package(m) for m in _imports() if m}
    assert packages == {name for layer in LAYERS for name in layer}


def test_imports_flow_one_way():
    rank = {name: level for level, layer in enumerate(LAYERS) for name in layer}
    upward = [
        f"{module} -> {target}"
        for module, targets in _imports().items()
        if module
        for target in targets
        if rank[_package(target)] > rank[_package(module)]
    ]
    assert not upward, "imports that point up a layer:\n" + "\n".join(sorted(upward))


def test_no_forbidden_edges():
    broken = []
    for module, targets in _imports().items():
        for target in targets:
            source, destination = _package(module), _package(target)
            allowed, reason = FORBIDDEN.get(destination, (None, ""))
            if allowed is not None and source not in allowed:
                broken.append(f"{module} -> {target}: {reason}")
            if source == "learning" and destination not in LEARNING_SEES:
                broken.append(f"{module} -> {target}: learning sees only {sorted(LEARNING_SEES)}")
    assert not broken, "\n".join(broken)
