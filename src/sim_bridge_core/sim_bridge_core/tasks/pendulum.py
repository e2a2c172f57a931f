"""Pendulum: swing the pole to a sampled angle and hold it there."""

from __future__ import annotations

import numpy as np

from sim_bridge_core.arrays import namespace, uniform, zeros
from sim_bridge_core.models import ModelError, RobotModel
from sim_bridge_core.sim.backends import SimBackend
from sim_bridge_core.tasks import terms
from sim_bridge_core.tasks.base import ControlHistory, Task, TaskOutcome, TaskSettings

SUCCESS_ANGLE_RAD = 0.05
SUCCESS_SPEED_RAD_S = 0.5


def wrap_angle(angle: np.ndarray) -> np.ndarray:
    return (angle + np.pi) % (2 * np.pi) - np.pi


class PendulumTask(Task):
    name = "pendulum"
    input_names = ("goal_angle",)
    action_scale = np.pi
    default_reward_weights = {"angle_error": -1.0, "joint_speed": -0.01}

    def __init__(self, robot: RobotModel, settings: TaskSettings | None = None) -> None:
        if robot.num_joints != 1:
            raise ModelError(
                f"task 'pendulum' needs a model with one joint, '{robot.name}' has {robot.num_joints}"
            )
        super().__init__(robot, settings)

    def sample_initial(self, rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
        start = uniform(rng, -np.pi, np.pi, (count, self.robot.num_joints))
        goal = uniform(rng, -np.pi, np.pi, (count, 1))
        return start, goal

    def inputs_from_goal(self, goal: np.ndarray) -> np.ndarray:
        """The goal angle is the point's x, wrapped to [-pi, pi)."""
        return wrap_angle(np.asarray(goal[:1], float))

    def goal_from_inputs(self, inputs: np.ndarray) -> np.ndarray:
        return np.array([float(inputs[0]), 0.0, 0.0])

    def outcome(self, backend: SimBackend, inputs: np.ndarray, history: ControlHistory) -> TaskOutcome:
        error = namespace(inputs).abs(wrap_angle(backend.joint_positions()[:, 0] - inputs[:, 0]))
        speed = terms.joint_speed(backend.joint_velocities())
        reward_terms = self.weighted({"angle_error": error, "joint_speed": speed})
        return TaskOutcome(
            reward=sum(reward_terms.values()),
            terminated=zeros((backend.num_envs,), inputs, "bool"),
            success=(error < SUCCESS_ANGLE_RAD) & (speed < SUCCESS_SPEED_RAD_S),
            reward_terms=reward_terms,
        )
