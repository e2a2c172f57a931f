"""Batched episodes: a backend and a task, with episode clocks and auto-reset of finished worlds.

With a ``Randomizer`` the env also randomizes: model parameters are redrawn by its
schedule (the reset schedule redraws exactly the worlds that reset, here in ``reset``),
targets go through the per-world action delay and action noise, reset poses get the
initial joint offset, and ``measured_positions`` / ``measured_velocities`` /
``measured_sensors`` (what the observation and the simulator's publishers read) carry sensor
bias and noise, drawn once per step. Without one, everything is as the backend and task make it.

The env's arrays live where the backend's state does: numpy for host worlds, torch tensors on the
device for a resident backend (MuJoCo Warp, ``resident=True``), where observations, rewards,
resets, the reset draws, the command execution and the randomization stay on the device.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from sim_bridge_core.arrays import (
    draws,
    integers,
    is_host,
    like,
    namespace,
    on_device,
    restore_stream,
    stream_state,
    to_host,
    zeros,
)
from sim_bridge_core.sim.backends import SimBackend
from sim_bridge_core.sim.control import CommandExecution, updates_per_period
from sim_bridge_core.sim.sensors import SensorLayout
from sim_bridge_core.tasks import ControlHistory, Task

if TYPE_CHECKING:
    from sim_bridge_core.randomization import Randomizer


@dataclass(frozen=True)
class StepResult:
    """What one control step did to every world.

    Worlds that finished (``terminated | truncated``) were already reset: the env's
    state and inputs are those of their next episode, and ``final_observations`` holds the
    observation of the last (measured) state of each episode that ended, in world order.
    ``reward_terms``: the reward's terms times their weights, name -> (N,), summing to ``reward``
    (empty where the worlds do not report them).
    """

    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    success: np.ndarray
    final_observations: np.ndarray
    reward_terms: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def done(self) -> np.ndarray:
        return self.terminated | self.truncated

    def on_host(self) -> StepResult:
        """The same result in numpy arrays (itself where it is in numpy): for messages and files."""
        if is_host(self.reward):
            return self
        terms = {name: to_host(values) for name, values in self.reward_terms.items()}
        fields = (self.reward, self.terminated, self.truncated, self.success, self.final_observations)
        return StepResult(*(to_host(values) for values in fields), reward_terms=terms)


class JobStoppedError(Exception):
    """Training or evaluation cut short on request (SIGINT/SIGTERM): the job is stopping."""


class WorldsLostError(RuntimeError):
    """The worlds can step no more: a simulator in another process died or stopped answering.
    Training ends with a checkpoint, so a rerun resumes once the simulators are back."""


class Worlds(Protocol):
    """What training and evaluation need from N worlds, wherever they run.

    A ``BatchedEnv`` in this process (the fused transport) and the simulator node's worlds
    reached through the lockstep ``batch/*`` topics (the ros transport) both provide it.
    """

    task: Task
    num_envs: int
    episode_steps: int

    @property
    def control_dt(self) -> float: ...

    @property
    def command_interface(self) -> str: ...

    @property
    def time_ns(self) -> int: ...

    def reset(self, *, stagger: bool = False) -> None: ...

    def observation(self) -> np.ndarray: ...

    def step(self, targets: np.ndarray) -> StepResult: ...

    def set_randomization_enabled(self, enabled: bool) -> None: ...

    def random_state(self) -> dict[str, Any]: ...

    def restore_random_state(self, state: dict[str, Any]) -> None: ...


class BatchedEnv:
    """N worlds running one task; sim time runs on across resets."""

    def __init__(
        self,
        backend: SimBackend,
        task: Task,
        episode_length_s: float,
        seed: int = 0,
        randomizer: Randomizer | None = None,
        command_interface: str = "trajectory",
        controller_rate_hz: float = 0.0,
    ) -> None:
        if randomizer is not None and randomizer.backend is not backend:
            raise ValueError("the randomizer must be built on the env's backend")
        self.backend = backend
        robot = backend.robot
        updates = updates_per_period(backend.substeps, robot.physics_dt, controller_rate_hz)
        delay_steps = round(robot.parameters.command_delay_s / robot.physics_dt)
        positions = backend.joint_positions()  # where the env's arrays live (``self._reference``)
        self._reference = positions[:0]
        self.commands = CommandExecution(command_interface, updates, positions, backend.substeps, delay_steps)
        self.randomizer = randomizer
        self.task = task
        self.num_envs = backend.num_envs
        self.episode_steps = max(1, round(episode_length_s / backend.control_dt))
        self.rng = draws(seed, self._reference)
        self.inputs = zeros((self.num_envs, len(task.input_names)), self._reference)
        self.sensors = SensorLayout.of(robot)
        # What each world's policy commanded last period (observed by tasks that use it).
        self.previous_targets = zeros(positions.shape, positions) + like(robot.home, positions)
        self.episode_step = zeros((self.num_envs,), self._reference, "int")
        self.steps = 0
        self.reset()

    @property
    def control_dt(self) -> float:
        return self.backend.control_dt

    @property
    def command_interface(self) -> str:
        return self.commands.interface

    @property
    def time_ns(self) -> int:
        """Sim time in integer nanoseconds (exact, never goes backwards)."""
        return self.steps * round(self.backend.control_dt * 1e9)

    @property
    def resident(self) -> bool:
        """The worlds' arrays are device tensors (a resident backend), not numpy arrays."""
        return not is_host(self._reference)

    def seed(self, seed: int) -> None:
        self.rng = draws(seed, self._reference)

    def reset(self, ids: np.ndarray | None = None, stagger: bool = False) -> None:
        """Start new episodes in worlds ``ids`` (all by default) from the task's reset distribution.

        ``stagger`` starts each world at a random step of its episode, so that training
        rollouts mix early and late steps from the start (as rsl_rl does); evaluation
        wants whole episodes and leaves it off.
        """
        reference = self._reference
        if ids is None:
            ids = namespace(reference).arange(self.num_envs, device=reference.device)
        elif is_host(reference):
            ids = np.asarray(ids, dtype=np.int64)
        count = int(ids.shape[0])
        if count == 0:
            return
        positions, inputs = (on_device(draw, reference) for draw in self.task.sample_initial(self.rng, count))
        if self.randomizer is not None:
            positions = self.randomizer.on_reset(ids, positions)
        self.backend.reset(ids, positions)
        self.commands.hold(ids, self.backend.joint_positions()[ids])
        self.inputs[ids] = inputs
        self.previous_targets[ids] = like(self.backend.robot.home, reference)
        self.task.reset_episodes(ids, self.num_envs)
        self.episode_step[ids] = integers(self.rng, 0, self.episode_steps, (count,)) if stagger else 0

    def set_randomization_enabled(self, enabled: bool) -> None:
        """Randomized or nominal physics from now on (no-op without a randomizer)."""
        if self.randomizer is not None:
            self.randomizer.set_enabled(enabled)

    def random_state(self) -> dict[str, Any]:
        """What a training checkpoint keeps to resume the same draws (plain data): the reset
        distribution's stream, and the randomizer's streams and curriculum step."""
        state: dict[str, Any] = {"reset": stream_state(self.rng)}
        if self.randomizer is not None:
            state["randomizer"] = self.randomizer.state()
        return state

    def restore_random_state(self, state: dict[str, Any]) -> None:
        """Continue from ``random_state()`` (parts this env lacks or the state lacks are skipped)."""
        if "reset" in state:
            restore_stream(self.rng, state["reset"])
        if "randomizer" in state and self.randomizer is not None:
            self.randomizer.restore(state["randomizer"])

    def step(
        self,
        targets: np.ndarray,
        commanded: np.ndarray | None = None,
        followed: Mapping[int, np.ndarray] | None = None,
    ) -> StepResult:
        """Command joint positions (N, J) for one control period, then reset finished worlds.

        Each world's controller executes its command as the command interface does on a robot
        (``sim_bridge_core.sim.control``), from the measured position. ``commanded`` (N,) bool marks
        the worlds that received a new command (default all, as in training, where every period
        brings one); the others hold their last one. ``followed`` gives worlds that follow a
        multi-point trajectory their (U, J) setpoints for the period instead.
        """
        randomizer = self.randomizer
        targets = on_device(targets, self._reference)
        worlds = None if commanded is None else np.flatnonzero(commanded)
        if worlds is None:
            self.previous_targets[:] = targets
        else:
            self.previous_targets[worlds] = targets[worlds]
        if randomizer is not None:
            targets = randomizer.actuate(targets)
        if worlds is None or worlds.size:
            self.commands.command(targets, self.measured_positions(), worlds)
        setpoints = self.commands.setpoints(delay=not followed)
        if followed:  # before the delay: the followers' setpoints travel to the servos like any
            setpoints = np.array(np.broadcast_to(setpoints, (self.commands.updates, *targets.shape)))
            for world, profile in followed.items():
                setpoints[:, world] = profile
            for world, profile in followed.items():
                self.commands.hold_target(world, profile[-1])
            setpoints = self.commands.delayed(setpoints)
        self.backend.step(setpoints)
        self.steps += 1
        self.episode_step += 1
        if randomizer is not None:
            randomizer.after_step()
        outcome = self.task.outcome(self.backend, self.inputs, self.control_history())
        truncated = (self.episode_step >= self.episode_steps) & ~outcome.terminated & self.task.episodic
        done_ids = namespace(truncated).nonzero(outcome.terminated | truncated)[0]
        # Most steps end no episode: no second read of every world's state then.
        final_observations = (
            self.observation(done_ids)
            if done_ids.shape[0]
            else zeros((0, self.task.observation_size), self._reference, "float32")
        )
        self.reset(done_ids)
        return StepResult(
            reward=outcome.reward,
            terminated=outcome.terminated,
            truncated=truncated,
            success=outcome.success,
            final_observations=final_observations,
            reward_terms=outcome.reward_terms,
        )

    def measured_positions(self) -> np.ndarray:
        """(N, J) joint positions as sensed: the true ones, plus bias and noise when randomized."""
        positions = self.backend.joint_positions()
        return positions if self.randomizer is None else self.randomizer.measure_positions(positions)

    def measured_velocities(self) -> np.ndarray:
        """(N, J) joint velocities as sensed: the true ones, plus noise when randomized."""
        velocities = self.backend.joint_velocities()
        return velocities if self.randomizer is None else self.randomizer.measure_velocities(velocities)

    def measured_sensors(self) -> np.ndarray:
        """(N, F) sensor values, columns named by ``sensors.fields``; the IMU's as it measures them
        (with the randomization's IMU noise and bias)."""
        rows = self.sensors.read(self.backend)
        return rows if self.randomizer is None else self.randomizer.measure_imu(rows, self.sensors.fields)

    def control_history(self, rows: np.ndarray | slice = slice(None)) -> ControlHistory:
        """What each world's policy keeps: its last targets and the time into its episode."""
        previous = self.previous_targets[rows]
        elapsed_s = self.episode_step[rows] * self.backend.control_dt
        return ControlHistory(namespace(previous).asarray(previous, copy=True), elapsed_s)

    def observation(self, ids: np.ndarray | None = None) -> np.ndarray:
        """The task's observation of the current (measured) state of worlds ``ids`` (default all)."""
        rows = slice(None) if ids is None else ids
        imu = self.measured_sensors()[rows, self.sensors.blocks["imu"]] if self.task.uses_imu else None
        return self.task.observation(
            self.measured_positions()[rows],
            self.measured_velocities()[rows],
            self.inputs[rows],
            imu=imu,
            history=self.control_history(rows),
        )
