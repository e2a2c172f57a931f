"""A node's own rosbag2 recording: what it received and sent, as `ros2 bag record` would keep it."""

from __future__ import annotations

from pathlib import Path

from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock

from sim_bridge_core.recording.bag import CLOCK_TOPIC, CLOCK_TYPE, STREAM_QOS, BagWriter, RecordingError


class NodeRecorder:
    """Raw messages stamped with the node's clock (sim time under ``use_sim_time``), plus /clock.

    A write error stops recording with one error line and the node goes on: losing the bag must
    not stop a robot mid-motion. Raises ``RecordingError`` when the bag cannot be created.
    """

    def __init__(
        self, node: Node, path: Path, topics: list[tuple[str, str]], max_bag_size_mb: float = 64.0
    ) -> None:
        self._node = node
        entries = [(name, msgtype, STREAM_QOS) for name, msgtype in topics]
        entries.append((CLOCK_TOPIC, CLOCK_TYPE, STREAM_QOS))
        self._bag: BagWriter | None = BagWriter(path, entries, max_bag_size_mb=max_bag_size_mb)
        self.directory = self._bag.directory
        node.create_subscription(
            Clock,
            CLOCK_TOPIC,
            lambda data: self.record(CLOCK_TOPIC, data),
            QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE),
            raw=True,
        )
        node.get_logger().info(f"recording {', '.join(name for name, _, _ in entries)} to {self.directory}")

    def record(self, topic: str, data: bytes) -> None:
        if self._bag is None:
            return
        try:
            self._bag.write(topic, self._node.get_clock().now().nanoseconds, data)
        except RecordingError as exc:
            self._node.get_logger().error(f"recording stopped: {exc}")
            self._bag = None

    def close(self) -> None:
        if self._bag is not None:
            bag, self._bag = self._bag, None
            bag.close()
