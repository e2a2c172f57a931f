"""A node's own bag (NodeRecorder) on a real rclpy node: written off the caller's thread, read back."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import rclpy
from rosbags.highlevel import AnyReader
from sim_bridge_core.recording.bag import JOINT_STATE_TYPE
from sim_bridge_core.ros.recording import NodeRecorder
from sim_bridge_core.simulator.wire import JointStateDecoder, JointStateEncoder

JOINTS = ("a", "b")
TOPIC = "/joint_states"


@pytest.fixture
def node() -> Iterator[rclpy.node.Node]:
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("recording_test", context=context)
    yield node
    node.destroy_node()
    context.try_shutdown()


def states(count: int) -> list[bytes]:
    encoder = JointStateEncoder(JOINTS)
    return [encoder.encode(k, [k, -k], [0.0, 0.0], [0.0, 0.0]) for k in range(count)]


def recorded_positions(directory) -> list[float]:
    decoder = JointStateDecoder(JOINTS)
    with AnyReader([directory]) as bag:
        connections = [c for c in bag.connections if c.topic == TOPIC]
        return [decoder.decode(raw).position[0] for _, _, raw in bag.messages(connections=connections)]


def test_close_writes_every_queued_message_in_order(node, tmp_path):
    recorder = NodeRecorder(node, tmp_path / "bag", [(TOPIC, JOINT_STATE_TYPE)], max_bag_size_mb=0.01)
    for data in states(500):
        recorder.record(TOPIC, data)
    recorder.close()
    recorder.record(TOPIC, states(1)[0])  # after close: ignored
    assert recorder.dropped == 0
    np.testing.assert_array_equal(recorded_positions(tmp_path / "bag"), np.arange(500))


def test_a_full_queue_drops_and_counts_instead_of_waiting(node, tmp_path):
    # A one-message queue and a split (an fsync) every few messages: the writer falls behind a burst.
    recorder = NodeRecorder(
        node, tmp_path / "bag", [(TOPIC, JOINT_STATE_TYPE)], max_bag_size_mb=0.0005, queue_messages=1
    )
    burst = 2000
    for data in states(burst):
        recorder.record(TOPIC, data)
    recorder.close()
    kept = recorded_positions(tmp_path / "bag")
    assert recorder.dropped > 0 and len(kept) + recorder.dropped == burst
    assert kept == sorted(kept)  # what was kept is in order, gaps where messages were dropped
