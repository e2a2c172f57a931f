"""The sysid node (``bringup sysid``): system identification from rosbag2 bags, as a job.

The work is ``sim_bridge_core.jobs.sysid.run_sysid`` on a thread (the executor keeps serving the
node meanwhile); when it ends the node sets ``finished`` and the process exits: 0 with the
outputs written, 2 with one line naming the problem (bad bags, too little data, joints that
never move, the sysid extra missing; nothing is written then), 1 if the fit itself failed.
"""

from __future__ import annotations

import sys
import threading

from rclpy.executors import Executor
from rclpy.node import Node
from sim_bridge_core.config import ConfigError
from sim_bridge_core.jobs.sysid import run_sysid
from sim_bridge_core.ros.parameters import declare_config
from sim_bridge_core.ros.run import run_node
from sim_bridge_core.sysid.bags import SysidInputError
from sim_bridge_core.sysid.config import SysidConfig
from sim_bridge_core.sysid.outputs import error_line


class SysidNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("sysid", **kwargs)
        self.config = declare_config(self, SysidConfig, "sysid")
        self.config.check()
        self.exit_code = 0
        self.finished = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sysid", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ctrl-C: give up the fit (its outputs are only written at its end) and let the process go."""
        self.finished.set()

    def _run(self) -> None:
        log = self.get_logger().info
        try:
            outcome = run_sysid(self.config, log=log)
            result, paths = outcome["result"], outcome["paths"]
            log(
                f"done in {result.wall_s:.0f} s ({result.iterations} iterations): {error_line(result)}; "
                "wrote " + ", ".join(str(path) for path in paths.values())
            )
        except (ConfigError, SysidInputError) as exc:
            print(f"[sysid] error: {exc}", file=sys.stderr, flush=True)
            self.exit_code = 2
        except Exception as exc:  # the fit failed: say why, exit non-zero
            self.get_logger().error(f"sysid failed: {type(exc).__name__}: {exc}")
            self.exit_code = 1
        finally:
            self.finished.set()


def prepare(node: SysidNode, executor: Executor, stop: threading.Event) -> None:
    """Start the job once the node is on an executor (also what `bringup` calls)."""
    node.start()


def main(args: list[str] | None = None) -> int:
    return run_node("sysid", SysidNode, args, prepare=prepare)


if __name__ == "__main__":
    sys.exit(main())
