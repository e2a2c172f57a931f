"""The simulator node's worlds seen through the lockstep ``batch/*`` topics, without rclpy.

The ros transport trains on a simulator in another process. ``RemoteWorlds`` gives the training
loop the surface of a ``BatchedEnv`` (``task``, ``num_envs``, ``episode_steps``, ``observation``,
``step``, ``reset``) while the only link is serialized messages: ``batch/joint_states`` and
``batch/task`` in, ``batch/joint_trajectory`` out, in lockstep. The ROS glue
(``sim_bridge_core.ros.batch_topics``) injects the callables and feeds the bytes from its
executor thread; the training thread blocks in ``observation`` / ``step`` until the pair it
needs has arrived.

Pairing: batch/task has no header, so the simulator ends every row with ``step`` (the state's
stamp in control periods, mod 2**24); a state and a task message pair when their steps agree.
While it waits for an answer the simulator resends the pending pair: a resend of the current
step replaces it by an identical copy, a state resent after it was answered means the command
was lost (it is sent again), and anything older than the current step is stale and ignored.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sim_bridge_core.envs.batched import JobStoppedError, StepResult, WorldsLostError
from sim_bridge_core.simulator.protocol import STEP_MODULUS, TASK_PAIRING, TASK_SIGNALS, control_step
from sim_bridge_core.simulator.wire import JointStateDecoder, JointTrajectoryEncoder, decode_multi_array
from sim_bridge_core.tasks import Task

STATES, TASK, COMMAND = "batch/joint_states", "batch/task", "batch/joint_trajectory"
# Unpaired messages kept per topic; lockstep needs one, more only absorbs odd traffic.
_PENDING = 4


class RemoteError(WorldsLostError):
    """The simulator did not deliver in time, or refused a request; the message says which topic."""


@dataclass(frozen=True)
class _State:
    seq: int  # arrival order over both topics
    stamp_ns: int
    positions: np.ndarray
    velocities: np.ndarray
    efforts: np.ndarray


@dataclass(frozen=True)
class _Signals:
    seq: int
    rows: np.ndarray  # (N, F) float32, fields as RemoteWorlds.task_fields


@dataclass(frozen=True)
class _Pair:
    step: int
    state: _State
    signals: _Signals


class RemoteWorlds:
    """N worlds of a simulator node in lockstep, driven through injected message callables.

    ``send(bytes)`` publishes a batch/joint_trajectory; ``reset()`` calls the simulator's
    ``~/reset`` and returns once it answered; ``set_randomization_enabled(bool)`` sets its
    ``randomization_enabled`` parameter. ``on_error(topic, reason)`` hears about malformed
    messages (worth a throttled log line); they change nothing.
    """

    def __init__(
        self,
        task: Task,
        num_envs: int,
        control_dt: float,
        episode_length_s: float,
        send: Callable[[bytes], None],
        reset: Callable[[bool], None],
        set_randomization_enabled: Callable[[bool], None],
        timeout_s: float = 10.0,
        on_error: Callable[[str, str], None] | None = None,
        command_interface: str = "trajectory",
    ) -> None:
        if task.uses_imu:
            raise ValueError(
                f"task {task.name} observes the IMU, which the batch/* lockstep does not carry: "
                "train it with transport:=fused"
            )
        self.task = task
        self.command_interface = command_interface  # the simulator's: how it executes our commands
        self.robot = task.robot
        self.num_envs = num_envs
        self.control_dt = control_dt
        self.episode_steps = max(1, round(episode_length_s / control_dt))
        self.timeout_s = timeout_s
        self.task_fields = (*TASK_SIGNALS, *task.input_names, *TASK_PAIRING)
        names = [f"env_{i}/{joint}" for i in range(num_envs) for joint in task.robot.joint_names]
        self._decoder = JointStateDecoder(names)
        self._encoder = JointTrajectoryEncoder(names)
        self._shape = (num_envs, task.robot.num_joints)
        self._labels = ("env", ",".join(self.task_fields))
        self._send = send
        self._reset_call = reset
        self._set_randomization_call = set_randomization_enabled
        self._on_error = on_error
        self.rejected = 0
        self.last_rejection = ""

        self._cond = threading.Condition()
        self._seq = 0
        self._states: dict[int, _State] = {}
        self._signals: dict[int, _Signals] = {}
        self._pair: _Pair | None = None
        self._fresh_after = 0  # after a reset, pairs count only if both messages arrived later
        self._answered: int | None = None  # the step whose command is out, awaiting the next state
        self._sent_seq = 0
        self._lost_command = False
        self._observation: np.ndarray | None = None
        self._in_flight: tuple[bytes, float] | None = None  # the command sent and its answer's deadline
        self._interrupted = False

    def interrupt(self) -> None:
        """Make every wait, now and later, raise ``JobStoppedError``: the job is stopping, and the
        simulator may be stopping with it (Ctrl-C on a launch), so an answer may never come."""
        with self._cond:
            self._interrupted = True
            self._cond.notify_all()

    # Incoming (executor thread) -------------------------------------------------------------------

    def on_joint_states(self, data: bytes) -> None:
        """A serialized batch/joint_states."""
        try:
            stamp_ns, positions, velocities, efforts = self._decode_state(data)
        except ValueError as exc:
            self._reject(STATES, str(exc))
            return
        step = control_step(stamp_ns, self.control_dt)
        with self._cond:
            self._seq += 1
            state = _State(self._seq, stamp_ns, positions, velocities, efforts)
            if self._answered == step and self._seq > self._sent_seq:
                self._lost_command = True  # the simulator is still waiting for this step's answer
            self._store(self._states, step, state)

    def on_task(self, data: bytes) -> None:
        """A serialized batch/task."""
        try:
            rows, step = self._decode_signals(data)
        except ValueError as exc:
            self._reject(TASK, str(exc))
            return
        with self._cond:
            self._seq += 1
            self._store(self._signals, step, _Signals(self._seq, rows))

    def _decode_state(self, data: bytes) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
        """Stamp and (N, J) positions, velocities, efforts; ValueError saying what is wrong."""
        message = self._decoder.decode(data)
        if message.names is not self._decoder.names:
            raise ValueError(
                f"{len(message.names)} names, expected env_<i>/<joint> for {self.num_envs} worlds of "
                f"{self.robot.name}'s {self._shape[1]} joints (first: {message.names[:1]})"
            )
        size = self.num_envs * self._shape[1]
        effort = message.effort if message.effort.size else np.zeros(size)  # effort is optional
        arrays = {"position": message.position, "velocity": message.velocity, "effort": effort}
        for field, values in arrays.items():
            if values.size != size:
                raise ValueError(f"{values.size} {field} values, expected {size}")
            if not np.isfinite(values).all():
                raise ValueError(f"{field} contains NaN or inf")
        return (message.stamp_ns, *(values.reshape(self._shape) for values in arrays.values()))

    def _decode_signals(self, data: bytes) -> tuple[np.ndarray, int]:
        labels, rows = decode_multi_array(data, np.float32)
        if labels != self._labels:
            raise ValueError(
                f"labels {labels}, expected {self._labels} (is the simulator's task '{self.task.name}'?)"
            )
        if rows.shape != (self.num_envs, len(self.task_fields)):
            raise ValueError(f"shape {rows.shape}, expected {(self.num_envs, len(self.task_fields))}")
        if not np.isfinite(rows).all():
            raise ValueError("values contain NaN or inf")
        steps = rows[:, -1]
        step = float(steps[0])
        if not (np.all(steps == step) and step.is_integer() and 0 <= step < STEP_MODULUS):
            raise ValueError("the step column is not one integer in [0, 2**24)")
        return rows, int(step)

    def _reject(self, topic: str, reason: str) -> None:
        with self._cond:
            self.rejected += 1
            self.last_rejection = f"{topic}: {reason}"
        if self._on_error is not None:
            self._on_error(topic, reason)

    def _behind(self, step: int) -> bool:
        """Older than the current pair's step (mod 2**24): a stale resend."""
        if self._pair is None:
            return False
        return (step - self._pair.step) % STEP_MODULUS >= STEP_MODULUS // 2

    def _store(self, pending: dict, step: int, item: _State | _Signals) -> None:
        """Keep the newest message of ``step`` and promote a completed pair (lock held)."""
        if self._behind(step):
            return
        pending[step] = item
        while len(pending) > _PENDING:
            del pending[min(pending, key=lambda s: pending[s].seq)]
        state, signals = self._states.get(step), self._signals.get(step)
        if state is None or signals is None or min(state.seq, signals.seq) <= self._fresh_after:
            return
        current = self._pair
        if current is not None and current.step == step:
            # The same step again: a resend (identical) or the state a reset published.
            if self._answered == step or state.seq <= current.state.seq or signals.seq <= current.signals.seq:
                return
        self._pair = _Pair(step, state, signals)
        self._observation = None
        for queue in (self._states, self._signals):
            for old in [s for s in queue if self._behind(s)]:
                del queue[old]
        self._cond.notify_all()

    # Training thread ------------------------------------------------------------------------------

    def _wait(self, ready: Callable[[], bool], deadline: float, what: Callable[[], str]) -> None:
        """Wait (lock held) until ``ready()``; RemoteError naming what is missing at the deadline."""
        while not ready():
            if self._interrupted:
                raise JobStoppedError("stopped while waiting for the simulator")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                rejected = f"; last rejected {self.last_rejection}" if self.last_rejection else ""
                raise RemoteError(
                    f"{what()} within {self.timeout_s} s: is the simulator running in lockstep mode "
                    f"with num_envs {self.num_envs}, task '{self.task.name}' and control_dt "
                    f"{self.control_dt}?{rejected}"
                )
            self._cond.wait(remaining)

    def _missing(self, after: int | None) -> str:
        """Which topic has not delivered a usable message (for the step after ``after``)."""
        wanted = "the first state" if after is None else f"step {(after + 1) % STEP_MODULUS}"

        def arrived(pending: dict) -> bool:
            return any(item.seq > self._fresh_after and s != after for s, item in pending.items())

        topic = (
            STATES
            if not arrived(self._states)
            else TASK
            if not arrived(self._signals)
            else f"{STATES} and {TASK}"
        )
        return f"no {topic} for {wanted}"

    def _current(self) -> _Pair:
        """The current pair, waiting for the first one (lock held)."""
        self._wait(
            lambda: self._pair is not None, time.monotonic() + self.timeout_s, lambda: self._missing(None)
        )
        assert self._pair is not None
        return self._pair

    def observation(self) -> np.ndarray:
        """(N, observation_size) float32 of the current state, by the task's own observation builder."""
        with self._cond:
            pair = self._current()
            if self._observation is None:
                inputs = pair.signals.rows[:, len(TASK_SIGNALS) : -len(TASK_PAIRING)]
                self._observation = self.task.observation(pair.state.positions, pair.state.velocities, inputs)
            return self._observation

    def step(self, targets: np.ndarray) -> StepResult:
        """Send position targets (N, J) answering the current state; return what the next step did.

        Worlds that finished were reset by the simulator in the same step, so the new state and
        inputs are those of their next episode; ``final_observations`` is empty (not on the wire).
        """
        self.send(targets)
        return self.receive()

    def send(self, targets: np.ndarray) -> None:
        """The first half of ``step``: answer the current state with targets (N, J). Several
        simulators sent to before any is waited for step side by side (``ShardedWorlds``)."""
        targets = np.asarray(targets, dtype=np.float64)
        if targets.shape != self._shape:
            raise ValueError(f"targets have shape {targets.shape}, expected {self._shape}")
        if not np.isfinite(targets).all():
            raise ValueError("targets contain NaN or inf")
        with self._cond:
            answered = self._current()
            command = self._encoder.encode(answered.state.stamp_ns, targets)
            self._answered, self._sent_seq, self._lost_command = answered.step, self._seq, False
            self._in_flight = (command, time.monotonic() + self.timeout_s)
        self._send(command)

    def receive(self) -> StepResult:
        """The second half of ``step``: wait (until ``timeout_s`` after ``send``) for the step it
        answered to be done; a command the simulator did not get is sent again."""
        with self._cond:
            if self._in_flight is None or self._answered is None:
                raise RuntimeError("receive() without a send()")
            (command, deadline), answered = self._in_flight, self._answered

            def moved_on() -> bool:
                return self._pair is not None and self._pair.step != answered

            try:
                while True:
                    self._wait(
                        lambda: moved_on() or self._lost_command, deadline, lambda: self._missing(answered)
                    )
                    if moved_on():
                        break
                    # Our command went missing (e.g. sent before discovery matched): send it again.
                    self._sent_seq, self._lost_command = self._seq, False
                    self._cond.release()
                    try:
                        self._send(command)
                    finally:
                        self._cond.acquire()
            finally:
                self._answered, self._in_flight = None, None
            assert self._pair is not None
            return self._result(self._pair.signals.rows)

    def _result(self, rows: np.ndarray) -> StepResult:
        return StepResult(
            reward=rows[:, 0].astype(np.float64),
            terminated=rows[:, 1] != 0,
            truncated=rows[:, 2] != 0,
            success=rows[:, -2] != 0,
            final_observations=np.empty((0, self.task.observation_size), dtype=np.float32),
        )

    def reset(self, *, stagger: bool = False) -> None:
        """Every world back to its initial distribution; returns once the new state has arrived.

        ``stagger`` starts each world at a random step of its episode (the simulator's
        ``stagger_episodes``, set before its ``~/reset``).
        """
        with self._cond:
            self._fresh_after = self._seq
            self._pair, self._observation, self._answered, self._in_flight = None, None, None, None
        self._reset_call(stagger)
        with self._cond:
            self._current()

    def set_randomization_enabled(self, enabled: bool) -> None:
        """Randomized (True) or nominal (False) physics in the simulator from its next step."""
        self._set_randomization_call(bool(enabled))

    def random_state(self) -> dict[str, Any]:
        """Nothing: the draws happen in the simulator node, which keeps its own streams."""
        return {}

    def restore_random_state(self, state: dict[str, Any]) -> None:
        return  # the simulator node's streams are its own

    # The current state, for the training job and the recorder -------------------------------------

    @property
    def time_ns(self) -> int:
        """Sim time of the current state (its batch/joint_states stamp)."""
        with self._cond:
            return self._current().state.stamp_ns

    @property
    def positions(self) -> np.ndarray:
        """(N, J) measured joint positions of the current state."""
        with self._cond:
            return self._current().state.positions

    @property
    def velocities(self) -> np.ndarray:
        """(N, J) measured joint velocities of the current state."""
        with self._cond:
            return self._current().state.velocities

    @property
    def efforts(self) -> np.ndarray:
        """(N, J) joint efforts of the current state."""
        with self._cond:
            return self._current().state.efforts

    @property
    def signals(self) -> np.ndarray:
        """(N, F) float32 batch/task rows of the current state, columns named by ``task_fields``."""
        with self._cond:
            return self._current().signals.rows

    @property
    def inputs(self) -> np.ndarray:
        """(N, K) task inputs of the current state (e.g. the reach goal)."""
        return self.signals[:, len(TASK_SIGNALS) : -len(TASK_PAIRING)]
