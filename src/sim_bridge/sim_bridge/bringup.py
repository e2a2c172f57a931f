"""`bringup <job> [key:=value ...]`: config/<job>.yaml's nodes composed in one process.

The nodes are the real node classes on one rclpy context and a multi-threaded executor,
talking over real DDS exactly as separate processes would. Training and evaluation run to
completion (the process ends when the policy node has written its outputs); sim and
deploy run until Ctrl-C. The exit code is the first non-zero node exit code, 2 for bad input.
"""

from __future__ import annotations

import functools
import importlib
import sys

from rclpy.executors import MultiThreadedExecutor
from sim_bridge_core.bringup.description import JOBS, NODES, BringupArguments, describe, parse_overrides
from sim_bridge_core.config import ConfigError, setting_specs
from sim_bridge_core.ros.parameters import parameter_overrides
from sim_bridge_core.ros.run import run_nodes

from sim_bridge.paths import config_dir

# node name -> module (with a `prepare(node, executor)`) and class
NODE_CLASSES = {
    "simulator": ("sim_bridge_sim.simulator_node", "SimulatorNode"),
    "policy": ("sim_bridge_policy.policy_node", "PolicyNode"),
    "randomization": ("sim_bridge_randomization.randomization_node", "RandomizationNode"),
    "evaluator": ("sim_bridge_policy.evaluator_node", "EvaluatorNode"),
    "exciter": ("sim_bridge_policy.exciter_node", "ExciterNode"),
    "sysid": ("sim_bridge_policy.sysid_node", "SysidNode"),
}


def usage() -> str:
    lines = [
        f"usage: bringup {{{','.join(JOBS)}}} [key:=value ...]",
        "",
        "arguments (config/<job>.yaml sets defaults):",
    ]
    lines += [f"  {spec.name:<18} {spec.description}" for spec in setting_specs(BringupArguments)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    job, texts = argv[0], [text for text in argv[1:] if text != "--ros-args"]
    try:
        bringup = describe(job, parse_overrides(texts), config_dir())
    except ConfigError as exc:
        print(f"[bringup] error: {exc}", file=sys.stderr)
        return 2

    nodes = []
    for description in bringup.nodes:
        module_name, class_name = NODE_CLASSES[description.name]
        module = importlib.import_module(module_name)
        remaps = [arg for old, new in description.remappings for arg in ("-r", f"{old}:={new}")]
        make_node = functools.partial(
            getattr(module, class_name),
            parameter_overrides=parameter_overrides(description.parameters, NODES[description.name][2]),
            cli_args=["--ros-args", *remaps] if remaps else None,
            namespace=description.namespace or None,
        )
        nodes.append((make_node, module.prepare))
    names = ", ".join(description.name for description in bringup.nodes)
    print(f"[bringup] {job}: {names} in one process (Ctrl-C stops)", flush=True)
    return run_nodes("bringup", nodes, args=[], make_executor=lambda: MultiThreadedExecutor(num_threads=4))


if __name__ == "__main__":
    sys.exit(main())
