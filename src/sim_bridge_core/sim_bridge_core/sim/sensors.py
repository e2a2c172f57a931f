"""What a robot's sensors read, for N worlds at once: a floating base's odometry, an IMU, force/torque.

``SensorLayout`` finds them on a ``RobotModel`` and reads every world's values into one (N, F)
array with named columns. The simulator publishes rows of it as ``odom`` (nav_msgs/Odometry),
``imu`` (sensor_msgs/Imu; further IMUs as ``<site>/imu``) and ``<site>/wrench``
(geometry_msgs/WrenchStamped) per world, and all of it as ``batch/sensors``, so training sees what
deployment will.

Conventions (ROS's): quaternions ``x, y, z, w``; the base's pose is the root body's in the world
frame, its twist is expressed in the body frame (nav_msgs/Odometry's ``child_frame_id``); the IMU
reads in its site's frame: orientation of the site in the world, angular velocity (gyro) and linear
acceleration as an accelerometer reads it (gravity included: +9.81 m/s² up at rest).

When: odometry comes from the state at the end of the control period. MuJoCo computes sensor
values at the start of each physics step, so the IMU's gyro and accelerometer are those of the
state one physics step earlier (Go1: 4 ms). The CPU backend recomputes position-stage sensors
after its last step, so its IMU orientation is current. The Warp backend does not (only
kinematics), so there the orientation is one physics step old too, except on a step with a
reset, when every world's sensors are recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim_bridge_core.arrays import like, namespace, zeros
from sim_bridge_core.models import RobotModel
from sim_bridge_core.sim.backends import SimBackend

AXES = ("x", "y", "z")
QUATERNION = ("x", "y", "z", "w")
BASE_FIELDS = (
    *(f"base/position_{a}" for a in AXES),
    *(f"base/orientation_{a}" for a in QUATERNION),
    *(f"base/linear_velocity_{a}" for a in AXES),
    *(f"base/angular_velocity_{a}" for a in AXES),
)


def imu_fields(block: str) -> tuple[str, ...]:
    return (
        *(f"{block}/orientation_{a}" for a in QUATERNION),
        *(f"{block}/angular_velocity_{a}" for a in AXES),
        *(f"{block}/linear_acceleration_{a}" for a in AXES),
    )


def wrench_fields(site: str) -> tuple[str, ...]:
    return (*(f"{site}/force_{a}" for a in AXES), *(f"{site}/torque_{a}" for a in AXES))


@dataclass(frozen=True)
class SensorLayout:
    """Which sensors a robot has and where their values are; ``fields`` name the columns of ``read``."""

    robot: RobotModel
    fields: tuple[str, ...]
    # "base", "imu", "<site>/imu" of each further IMU, each force/torque site's name -> its columns
    blocks: dict[str, slice]

    @classmethod
    def of(cls, robot: RobotModel) -> SensorLayout:
        groups = []
        if robot.base is not None:
            groups.append(("base", BASE_FIELDS))
        if robot.imu is not None:
            groups.append(("imu", imu_fields("imu")))
        groups += [(f"{site.name}/imu", imu_fields(f"{site.name}/imu")) for site in robot.further_imus]
        groups += [(site.name, wrench_fields(site.name)) for site in robot.wrenches]
        fields: list[str] = []
        blocks = {}
        for name, group in groups:
            blocks[name] = slice(len(fields), len(fields) + len(group))
            fields += group
        return cls(robot, tuple(fields), blocks)

    @property
    def empty(self) -> bool:
        return not self.fields

    def read(self, backend: SimBackend) -> np.ndarray:
        """(N, F) values of every world at the backend's current state: float64 numpy, or tensors on
        the device of a resident backend."""
        robot, columns = self.robot, []
        if robot.base is not None:
            pose = backend.read("qpos", robot.base.qpos_adr + np.arange(7))
            twist = backend.read("qvel", robot.base.dof_adr + np.arange(6))
            quaternion = pose[:, 3:7]  # w, x, y, z
            # MuJoCo: the free joint's linear velocity is in the world frame, its angular one in the body's.
            linear = rotate_into(quaternion, twist[:, :3])
            columns += [pose[:, :3], quaternion[:, [1, 2, 3, 0]], linear, twist[:, 3:6]]
        imus = () if robot.imu is None else (robot.imu, *robot.further_imus)
        for site in imus:
            imu = backend.read("sensordata", site.sensordata)
            columns += [imu[:, [1, 2, 3, 0]], imu[:, 4:10]]
        for site in robot.wrenches:
            columns.append(backend.read("sensordata", site.sensordata))
        if not columns:
            return np.zeros((backend.num_envs, 0))
        return namespace(columns[0]).concat(columns, axis=1)


def rotate_into(quaternion: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """World-frame vectors (N, 3) expressed in the frames of unit quaternions (N, 4: w, x, y, z)."""
    cross = namespace(quaternion).linalg.cross
    w, xyz = quaternion[:, :1], quaternion[:, 1:]
    # v' = R^T v for R = rot(q): rotate by the conjugate (w, -xyz).
    t = 2.0 * cross(-xyz, vectors)
    return vectors + w * t + cross(-xyz, t)


def imu_gravity(imu: np.ndarray) -> np.ndarray:
    """(N, 3) unit gravity direction in the IMU's frame, from IMU rows (N, 10) as ``imu_fields``
    orders them (orientation x, y, z, w first), as a sensor_msgs/Imu message carries them."""
    quaternion = imu[:, [3, 0, 1, 2]]
    quaternion = quaternion / namespace(imu).linalg.vector_norm(quaternion, axis=1, keepdims=True)
    return rotate_into(quaternion, down(quaternion))


_DOWN = np.array([0.0, 0.0, -1.0])


def down(reference: np.ndarray) -> np.ndarray:
    """(N, 3) unit vectors pointing down the world's z, one per row of ``reference``, beside it."""
    return zeros((reference.shape[0], 3), reference) + like(_DOWN, reference)
