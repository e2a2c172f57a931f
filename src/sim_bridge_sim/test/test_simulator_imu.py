"""The simulator's IMU over real DDS: its very first message reads what the robot's state gives."""

from __future__ import annotations

import numpy as np
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Imu

# A floating base held still by a stiff weld to the world, with one servoed leg hanging straight.
HELD = """<mujoco model="held">
  <worldbody>
    <body name="trunk" pos="0 0 0.5">
      <freejoint/>
      <geom type="box" size="0.1 0.05 0.03" mass="2"/>
      <body name="leg" pos="0.1 0 0">
        <joint name="hip" axis="0 1 0" range="-1 1"/>
        <geom type="capsule" fromto="0 0 0 0 0 -0.1" size="0.01" mass="0.2"/>
      </body>
    </body>
  </worldbody>
  <equality><weld body1="trunk" solimp="0.999 0.999 0.001"/></equality>
  <actuator><position joint="hip" kp="20"/></actuator>
</mujoco>
"""


def test_the_first_imu_message_of_a_base_at_rest_reads_gravity(start_node, ros_client, tmp_path):
    model = tmp_path / "held.xml"
    model.write_text(HELD)
    reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    imu = ros_client.collect(Imu, "imu", reliable)
    # Lockstep: nothing is commanded, so every message (the first and its resends) is the initial state.
    sim = start_node("sim_bridge_sim", "simulator", model=str(model), task="none", mode="lockstep")
    ros_client.wait_until(lambda: imu, timeout=30, what="imu")
    first = imu[0]
    assert (first.header.stamp.sec, first.header.stamp.nanosec) == (0, 0)
    acceleration = first.linear_acceleration
    # An accelerometer at rest reads +g straight up (a reading of 0 is free fall).
    np.testing.assert_allclose([acceleration.x, acceleration.y, acceleration.z], [0.0, 0.0, 9.81], atol=0.1)
    assert sim.alive()
