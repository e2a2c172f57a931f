"""How every sim_bridge node process starts and stops."""

from __future__ import annotations

import sys
from collections.abc import Callable

import rclpy
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

from sim_bridge_core.config import ConfigError


def run_node(
    name: str,
    make_node: Callable[[], Node],
    args: list[str] | None = None,
    make_executor: Callable[[], Executor] = SingleThreadedExecutor,
    prepare: Callable[[Node, Executor], None] | None = None,
) -> int:
    """Build the node, run ``prepare``, spin until shutdown; the process exit code.

    A ConfigError while building or preparing prints one line naming the key and
    returns 2, so a bad configuration fails at start-up, visibly, with nothing running.
    A node that ends its own job (shutting the context down) sets ``exit_code``.
    """
    rclpy.init(args=args)
    node = None
    try:
        node = make_node()
        executor = make_executor()
        executor.add_node(node)
        if prepare is not None:
            prepare(node, executor)
        executor.spin()
    except ConfigError as exc:
        print(f"[{name}] error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return getattr(node, "exit_code", 0)
