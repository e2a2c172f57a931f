"""How every sim_bridge node process starts and stops: one node, or a composition of several."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Sequence

import rclpy
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from sim_bridge_core.config import ConfigError

# A node's start once it is on the executor; the event is set when a stop was requested meanwhile, so
# a start that waits (on another node, say) can give up instead of holding the process.
Prepare = Callable[[Node, Executor, threading.Event], None]


def run_nodes(
    name: str,
    nodes: Sequence[tuple[Callable[[], Node], Prepare | None]],
    args: list[str] | None = None,
    make_executor: Callable[[], Executor] = SingleThreadedExecutor,
) -> int:
    """Build every node, then run each one's ``prepare``, spin until shutdown; the process exit code.

    A ConfigError while building or preparing prints one line naming the key and
    returns 2, so a bad configuration fails at start-up, visibly, with nothing running.
    A node that runs a job to its end sets its ``finished`` event, which ends the process,
    and its ``exit_code``; the first non-zero one is the process's.

    SIGINT and SIGTERM (Ctrl-C, ``ros2 launch`` shutting down, ``docker stop``) are handled
    here instead of by rclpy, whose handlers shut the context down at once, under threads
    still publishing: every node's ``stop()`` runs first (the simulator stops stepping, a job
    winds down and writes what it has), the executor keeps serving until every job has
    finished, and only then are the nodes destroyed and the context shut down. The process
    exits 0, without a traceback.
    """
    # Nodes hand every lockstep step between threads (simulation or job, executor) several times; at
    # the default 5 ms GIL switch interval each handoff can wait a whole interval (measured in one
    # bringup process: 125 vs 1,531 env-steps/s for 32 worlds over batch/*; a learner process over a
    # simulator process: about 5 vs 33 steps/s for 64 worlds). A real-time simulator hands off too:
    # with the default interval a lone arm7 published about 21 joint_states/s instead of its rate.
    sys.setswitchinterval(1e-4)
    stop_requested = threading.Event()
    # Kept until the process exits: a late signal must not cut the teardown short either.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop_requested.set())
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    started: list[Node] = []
    executor = None
    try:
        executor = make_executor()
        for make_node, _ in nodes:
            started.append(make_node())
            executor.add_node(started[-1])
        for node, (_, prepare) in zip(started, nodes, strict=True):
            if prepare is not None:
                prepare(node, executor, stop_requested)
        while rclpy.ok() and not stop_requested.is_set() and not any(_finished(node) for node in started):
            executor.spin_once(timeout_sec=0.1)
        if stop_requested.is_set():
            for node in started:
                _stop(node)
            # Jobs wind down (checkpoint, bag, outputs) while the executor still serves their node.
            while rclpy.ok() and not all(_finished(node) for node in started if hasattr(node, "finished")):
                executor.spin_once(timeout_sec=0.1)
    except ConfigError as exc:
        print(f"[{name}] error: {exc}", file=sys.stderr)
        return 2
    except ExternalShutdownException:
        pass
    finally:
        for node in started:
            node.destroy_node()  # a node's destroy_node stops its threads before its publishers go
        if executor is not None:
            executor.shutdown(timeout_sec=2.0)
        rclpy.try_shutdown()
    return next((code for code in (getattr(node, "exit_code", 0) for node in started) if code), 0)


def _finished(node: Node) -> bool:
    finished = getattr(node, "finished", None)
    return finished is not None and finished.is_set()


def _stop(node: Node) -> None:
    stop = getattr(node, "stop", None)
    if stop is not None:
        stop()


def run_node(
    name: str,
    make_node: Callable[[], Node],
    args: list[str] | None = None,
    make_executor: Callable[[], Executor] = SingleThreadedExecutor,
    prepare: Prepare | None = None,
) -> int:
    """One node in its own process (every node executable's ``main``)."""
    return run_nodes(name, [(make_node, prepare)], args, make_executor)
