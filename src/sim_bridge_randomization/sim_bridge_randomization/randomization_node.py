"""The randomization node: owns the randomization spec and makes the simulator apply it.

It sends the spec to the simulator as its ``randomization`` parameter (and
``randomization_enabled``), through the simulator's standard parameter service, and
forwards ``~/randomize`` to the simulator's ``~/randomize``. The simulator applies every
draw per world and publishes the values in effect on ``randomization/applied``.

A range change (``<parameter>.low`` / ``.high``) is answered only once the simulator has
answered: the node takes the change when the simulator took it, and a refusal (the
simulator's reason) leaves the node's ranges and spec exactly as they were. Changes are
handled one at a time.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterDescriptor, ParameterType, ParameterValue, SetParametersResult
from rcl_interfaces.srv import SetParameters
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import Executor, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sim_bridge_core.config import ConfigError
from sim_bridge_core.randomization.service import (
    RandomizationNodeConfig,
    apply_settings,
    compose,
    ranges,
    read_spec_file,
    to_yaml,
)
from sim_bridge_core.ros.parameters import declare_config
from sim_bridge_core.ros.run import run_node
from std_srvs.srv import SetBool, Trigger

SERVICE_TIMEOUT_S = 30.0


class SimulatorUnavailableError(RuntimeError):
    """The simulator did not answer (not running, or another name)."""


class RandomizationNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("randomization", **kwargs)
        self.config = declare_config(self, RandomizationNodeConfig, "randomization")
        if not self.config.config:
            raise ConfigError("randomization.config: a spec YAML path is required")
        self.spec = compose(apply_settings(read_spec_file(self.config.config), self.config), {})
        self._spec_lock = threading.Lock()  # one change (and its simulator round trip) at a time
        for name, value in ranges(self.spec).items():
            self.declare_parameter(name, value, ParameterDescriptor(description=f"range bound of {name}"))
        self.add_on_set_parameters_callback(self._on_set_ranges)
        group = ReentrantCallbackGroup()
        simulator = self.config.simulator
        self._set_parameters = self.create_client(
            SetParameters, f"/{simulator}/set_parameters", callback_group=group
        )
        self._randomize = self.create_client(Trigger, f"/{simulator}/randomize", callback_group=group)
        self.create_service(Trigger, "~/randomize", self._on_randomize, callback_group=group)
        self.create_service(SetBool, "~/set_enabled", self._on_set_enabled, callback_group=group)

    def push(self, enabled: bool | None = None) -> SetParametersResult:
        """Send the spec (and the enabled flag) to the simulator; its answer says whether it took it."""
        with self._spec_lock:
            return self._send(self.spec, enabled)

    def hand_over(self, executor: Executor, stop: threading.Event) -> SetParametersResult | None:
        """``push`` at start-up, spinning ``executor`` while it waits for the simulator: no thread
        blocks, so a stop requested meanwhile ends the wait (None) at once. Otherwise a process
        stopped while its simulator went away would outlast ros2 launch's SIGTERM and SIGKILL."""
        client = self._set_parameters
        deadline = time.monotonic() + SERVICE_TIMEOUT_S

        def wait(done: Callable[[], bool]) -> bool:
            while not done():
                if stop.is_set():
                    return False
                if time.monotonic() > deadline:
                    raise SimulatorUnavailableError(
                        f"{client.srv_name} did not answer within {SERVICE_TIMEOUT_S:g} s"
                    )
                executor.spin_once(timeout_sec=0.05)
            return True

        with self._spec_lock:
            if not wait(client.service_is_ready):
                return None
            answer = client.call_async(_request(self.spec, self.config.enabled))
            return _outcome(answer.result()) if wait(answer.done) else None

    def _send(self, spec: dict, enabled: bool | None = None) -> SetParametersResult:
        return _outcome(self._call(self._set_parameters, _request(spec, enabled)))

    def _on_set_ranges(self, parameters: list[Parameter]) -> SetParametersResult:
        """Take new ranges only if the simulator takes the spec they make (the answer waits for it)."""
        with self._spec_lock:
            changed = {p.name: p.value for p in parameters if p.name in ranges(self.spec)}
            if not changed:
                return SetParametersResult(successful=True)
            try:
                updated = compose(self.spec, {name: float(value) for name, value in changed.items()})
                result = self._send(updated)
            except (ConfigError, TypeError, ValueError, SimulatorUnavailableError) as exc:
                return SetParametersResult(successful=False, reason=str(exc))
            if not result.successful:
                reason = f"the simulator refused the new ranges: {result.reason}"
                self.get_logger().error(reason)
                return SetParametersResult(successful=False, reason=reason)
            self.spec = updated
            return SetParametersResult(successful=True)

    def _on_randomize(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        try:
            answer = self._call(self._randomize, Trigger.Request())
        except SimulatorUnavailableError as exc:
            response.success, response.message = False, str(exc)
            return response
        response.success, response.message = answer.success, answer.message
        return response

    def _on_set_enabled(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        try:
            result = self.push(enabled=request.data)
        except SimulatorUnavailableError as exc:
            response.success, response.message = False, str(exc)
            return response
        response.success = result.successful
        response.message = result.reason or ("randomized" if request.data else "nominal physics")
        return response

    def _call(self, client, request):
        if not client.wait_for_service(timeout_sec=SERVICE_TIMEOUT_S):
            raise SimulatorUnavailableError(f"{client.srv_name} is not available")
        response = client.call(request, timeout_sec=SERVICE_TIMEOUT_S)
        if response is None:
            raise SimulatorUnavailableError(f"{client.srv_name} did not answer within {SERVICE_TIMEOUT_S} s")
        return response


def _request(spec: dict, enabled: bool | None) -> SetParameters.Request:
    """The simulator's parameters that carry ``spec`` (and the enabled flag, unless None)."""
    values = [_string("randomization", to_yaml(spec))]
    if enabled is not None:
        values.append(_bool("randomization_enabled", enabled))
    return SetParameters.Request(parameters=values)


def _outcome(response: SetParameters.Response) -> SetParametersResult:
    """The first refusal in the simulator's answer, else its first result."""
    refused = [r for r in response.results if not r.successful]
    return refused[0] if refused else response.results[0]


def _string(name: str, value: str) -> ParameterMsg:
    return ParameterMsg(
        name=name, value=ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
    )


def _bool(name: str, value: bool) -> ParameterMsg:
    return ParameterMsg(name=name, value=ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value))


def prepare(node: RandomizationNode, executor: Executor, stop: threading.Event) -> None:
    """Hand the spec to the simulator before serving; a refusal stops the node at start-up."""
    try:
        result = node.hand_over(executor, stop)
    except SimulatorUnavailableError as exc:
        raise ConfigError(f"randomization.simulator: {exc}") from exc
    if result is None:  # stopped while waiting: the process ends without a word
        return
    if not result.successful:
        raise ConfigError(f"randomization.config: the simulator refused the spec: {result.reason}")
    node.get_logger().info(f"spec {node.config.config} in effect on /{node.config.simulator}")


def main(args: list[str] | None = None) -> int:
    return run_node(
        "randomization",
        RandomizationNode,
        args,
        make_executor=lambda: MultiThreadedExecutor(num_threads=4),
        prepare=prepare,
    )


if __name__ == "__main__":
    sys.exit(main())
