"""Reach: bring the end-effector site to a sampled 3-D goal (success within 2 cm)."""

from __future__ import annotations

import numpy as np

from sim_bridge_core.backends import SimBackend
from sim_bridge_core.models import RobotModel
from sim_bridge_core.tasks.base import Task, TaskOutcome

SUCCESS_RADIUS_M = 0.02
# Goals in front of the arm, inside the reach of a 0.85 m manipulator (base frame, metres).
GOAL_LOW = np.array([0.30, -0.30, 0.20])
GOAL_HIGH = np.array([0.60, 0.30, 0.60])
INITIAL_JOINT_NOISE_RAD = 0.1


class ReachTask(Task):
    name = "reach"
    input_names = ("goal_x", "goal_y", "goal_z")

    def __init__(self, robot: RobotModel, ee_site: str = "ee") -> None:
        super().__init__(robot)
        self.ee_site = robot.site_id(ee_site)

    def sample_initial(self, rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
        noise = rng.uniform(-INITIAL_JOINT_NOISE_RAD, INITIAL_JOINT_NOISE_RAD, (count, self.robot.num_joints))
        goals = rng.uniform(GOAL_LOW, GOAL_HIGH, (count, 3))
        return self.robot.clamp(self.robot.home + noise), goals

    def evaluate(self, backend: SimBackend, inputs: np.ndarray) -> TaskOutcome:
        distance = np.linalg.norm(backend.site_positions(self.ee_site) - inputs, axis=1)
        # Dense shaping plus a sharp bonus near the goal, so the last centimetres still pay.
        reward = -distance + np.exp(-distance / 0.02)
        return TaskOutcome(
            reward=reward,
            terminated=np.zeros(backend.num_envs, dtype=bool),
            success=distance < SUCCESS_RADIUS_M,
        )

    @staticmethod
    def clamp_goal(goal: np.ndarray) -> np.ndarray:
        """A goal moved into the sampled workspace (what deployment does with far-away goals)."""
        return np.clip(goal, GOAL_LOW, GOAL_HIGH)
