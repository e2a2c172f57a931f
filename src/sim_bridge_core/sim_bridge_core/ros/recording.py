"""A node's own rosbag2 recording: what it received and sent, as `ros2 bag record` would keep it.

The bag is written on a thread of its own: ``record`` only stamps the message and queues it, so
the callbacks it is called from (a deployed policy's joint_states, on the control path) never wait
for a file write or the fsync of a bag split. A full queue drops the message, counted, with a
throttled warning: a gap in the bag is better than a late command.
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path

from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image

from sim_bridge_core.recording.bag import (
    CAMERA_INFO_TYPE,
    CLOCK_TOPIC,
    CLOCK_TYPE,
    IMAGE_TYPE,
    STREAM_QOS,
    BagWriter,
)

# Messages waiting for the writer: some seconds of a 500 Hz robot's states, commands and /clock,
# enough to ride out a slow disk's fsync.
QUEUE_MESSAGES = 8192
DROP_WARNING_PERIOD_S = 5.0
# The message class of each camera stream's bag type (``recording.bag.camera_topics``).
CAMERA_MESSAGES = {IMAGE_TYPE: Image, CAMERA_INFO_TYPE: CameraInfo}


class NodeRecorder:
    """Raw messages stamped with the node's clock (sim time under ``use_sim_time``), plus /clock.

    A write error stops recording with one error line and the node goes on: losing the bag must
    not stop a robot mid-motion. Raises ``RecordingError`` when the bag cannot be created. The
    bag stays readable after a kill as ``BagWriter`` keeps it (what was queued is lost).
    """

    def __init__(
        self,
        node: Node,
        path: Path,
        topics: list[tuple[str, str]],
        max_bag_size_mb: float = 64.0,
        queue_messages: int = QUEUE_MESSAGES,
    ) -> None:
        self._node = node
        entries = [(name, msgtype, STREAM_QOS) for name, msgtype in topics]
        entries.append((CLOCK_TOPIC, CLOCK_TYPE, STREAM_QOS))
        bag = BagWriter(path, entries, max_bag_size_mb=max_bag_size_mb)
        self.directory = bag.directory
        self.dropped = 0  # messages the full queue turned away
        self._drop_lock = threading.Lock()
        self._queue: queue.Queue[tuple[str, int, bytes] | None] = queue.Queue(maxsize=queue_messages)
        self._closed = False
        self._writer = threading.Thread(target=self._write_all, args=(bag,), name="bag writer", daemon=True)
        self._writer.start()
        node.create_subscription(
            Clock,
            CLOCK_TOPIC,
            lambda data: self.record(CLOCK_TOPIC, data),
            QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE),
            raw=True,
        )
        node.get_logger().info(f"recording {', '.join(name for name, _, _ in entries)} to {self.directory}")

    def record(self, topic: str, data: bytes) -> None:
        """Queue one message, stamped now; never waits (a full queue drops it and counts it)."""
        if self._closed:
            return
        try:
            self._queue.put_nowait((topic, self._node.get_clock().now().nanoseconds, data))
        except queue.Full:
            with self._drop_lock:
                self.dropped += 1
                dropped = self.dropped
            self._node.get_logger().warning(
                f"recording: the bag writer is behind, {dropped} messages dropped so far",
                throttle_duration_sec=DROP_WARNING_PERIOD_S,
            )

    def close(self) -> None:
        """Write everything queued, finish the bag and stop the writer thread."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)  # waits only for the writer to free a slot
        self._writer.join()
        if self.dropped:
            self._node.get_logger().warning(f"recording: {self.dropped} messages were dropped in all")

    def _write_all(self, bag: BagWriter) -> None:
        """The writer thread: every queued message into the bag, until close() queues None."""
        writing = True
        while (message := self._queue.get()) is not None:
            if writing:
                writing = self._guarded(bag.write, *message)
        if writing:
            self._guarded(bag.close)

    def _guarded(self, call, *args) -> bool:
        """Run a bag call; False (with one error line) when the bag failed and recording stopped."""
        try:
            call(*args)
        except Exception as exc:  # any failure: the thread must live on to drain the queue for close()
            self._node.get_logger().error(f"recording stopped: {type(exc).__name__}: {exc}")
            return False
        return True
