"""Camera topics of the simulator node: ``<camera>/image_raw`` (rgb8), ``<camera>/depth/image_raw``
(32FC1, metres along the optical axis) and ``<camera>/camera_info`` per published world.

Rendering runs on its own thread so that it never holds up stepping or control: it copies the
worlds' joint positions and the sim time under the simulation lock (a few numbers), renders
outside it, and stamps each picture with the simulated instant it shows. A camera is due every
``1 / rate_hz`` seconds of sim time; a frame that cannot be rendered in time is skipped, never queued.
Only the cameras a config lists are published (a model's own cameras included), so a model
without them never touches GL. With ``record_to`` every published image and camera_info also goes
into a bag through ``NodeRecorder``: serialized on this thread, written on the recorder's own.
"""

from __future__ import annotations

import copy
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from builtin_interfaces.msg import Time
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import serialize_message
from sensor_msgs.msg import CameraInfo, Image
from sim_bridge_core.models import RobotModel
from sim_bridge_core.randomization import VisualState
from sim_bridge_core.recording.bag import camera_topics
from sim_bridge_core.rendering import CameraSpec, WorldRenderer, camera_info
from sim_bridge_core.ros.recording import CAMERA_MESSAGES, NodeRecorder

# Reliable (so reliable and best-effort subscribers both match), latest picture only.
CAMERA_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
_BIG_ENDIAN = sys.byteorder == "big"
TYPES = {kind: msgtype for msgtype, kind in CAMERA_MESSAGES.items()}  # message class -> bag type

# (time_ns, (worlds, nq) qpos of the published worlds), copied under the simulation lock
Snapshot = Callable[[], tuple[int, np.ndarray, VisualState | None]]


class CameraPublisher:
    """Publishes ``cameras`` of ``robot`` for each of ``prefixes`` (one per published world, '' for
    one world), from snapshots ``snapshot`` takes; ``start`` and ``stop`` run its thread. With
    ``record_to`` (a new bag directory) it records what it publishes; RecordingError if it cannot."""

    def __init__(
        self,
        node: Node,
        robot: RobotModel,
        cameras: Sequence[CameraSpec],
        prefixes: Sequence[str],
        snapshot: Snapshot,
        now_ns: Callable[[], int],
        record_to: Path | None = None,
    ) -> None:
        self._node, self._cameras, self._snapshot, self._now_ns = node, tuple(cameras), snapshot, now_ns
        self._model = copy.copy(robot.model)  # the renderer's own: randomization never races it
        self._images, self._depths, self._infos = [], [], []
        for camera in self._cameras:
            streams = [
                [node.create_publisher(CAMERA_MESSAGES[msgtype], f"{p}{topic}", CAMERA_QOS) for p in prefixes]
                for topic, msgtype in camera_topics(camera.name, camera.depth)
            ]
            self._images.append(streams[0])
            self._depths.append(streams[1] if camera.depth else [])
            self._infos.append(streams[-1])
        publishers = [pub for pubs in (*self._images, *self._depths, *self._infos) for pub in pubs]
        self._recorder = (
            None
            if record_to is None
            else NodeRecorder(
                node,
                record_to,
                [(p.topic_name, TYPES[p.msg_type]) for p in publishers],
                # frames, not joint states: a bounded few per stream (and /clock), or a slow disk fills memory
                queue_messages=64 * len(publishers),
            )
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cameras", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        if self._recorder is not None:
            self._recorder.close()

    def _run(self) -> None:
        # GL contexts belong to the thread that made them: the renderers are made here.
        renderers: dict[tuple[int, int], WorldRenderer] = {}
        try:
            for camera in self._cameras:
                size = (camera.width, camera.height)
                if size not in renderers:
                    renderers[size] = WorldRenderer(self._model, *size)
            self._loop(renderers)
        except Exception as exc:  # a GL failure mid-run: the cameras stop, the simulation goes on
            self._node.get_logger().error(f"cameras stopped: {exc}")
        finally:
            for renderer in renderers.values():
                renderer.close()

    def _loop(self, renderers: dict[tuple[int, int], WorldRenderer]) -> None:
        periods = [int(1e9 / camera.rate_hz) for camera in self._cameras]
        poll_s = min(periods) / 4e9
        due: list[int | None] = [None] * len(self._cameras)
        while not self._stop.wait(poll_s):
            if all(at is not None and self._now_ns() < at for at in due):
                continue  # nothing due: leave the simulation lock alone
            stamp_ns, qpos, visual = self._snapshot()
            for i, camera in enumerate(self._cameras):
                if due[i] is not None and stamp_ns < due[i]:
                    continue
                on_time = due[i] is not None and stamp_ns < due[i] + periods[i]
                # on time: keep the schedule; late: skip the frames in between
                due[i] = due[i] + periods[i] if on_time else stamp_ns + periods[i]
                renderer = renderers[(camera.width, camera.height)]
                self._publish(i, camera, renderer, stamp_ns, qpos, visual)

    def _publish(
        self,
        i: int,
        camera: CameraSpec,
        renderer: WorldRenderer,
        stamp_ns: int,
        qpos: np.ndarray,
        visual: VisualState | None,
    ) -> None:
        stamp = Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)
        for world, image_pub in enumerate(self._images[i]):
            if visual is not None:  # this world's lights, colours, textures and camera pose
                visual.apply(self._model, world)
            intrinsics = camera_info(
                float(self._model.camera(camera.name).fovy[0]), camera.width, camera.height
            )
            rgb, depth = renderer.render(qpos[world], camera.name, depth=camera.depth)
            self._send(image_pub, _image(rgb, "rgb8", stamp, camera.name))
            if depth is not None:
                self._send(self._depths[i][world], _image(depth, "32FC1", stamp, camera.name))
            info = CameraInfo(
                height=camera.height, width=camera.width, distortion_model="plumb_bob", **intrinsics
            )
            info.header.stamp, info.header.frame_id = stamp, camera.name
            self._send(self._infos[i][world], info)

    def _send(self, publisher: Publisher, message: Image | CameraInfo) -> None:
        """Publish; when recording, serialize once and both publish and record those bytes."""
        if self._recorder is None:
            publisher.publish(message)
            return
        data = serialize_message(message)
        publisher.publish(data)
        self._recorder.record(publisher.topic_name, data)


def _image(pixels: np.ndarray, encoding: str, stamp: Time, frame: str) -> Image:
    """A sensor_msgs/Image of an HxW or HxWx3 array (rows top to bottom)."""
    message = Image(
        height=pixels.shape[0],
        width=pixels.shape[1],
        encoding=encoding,
        is_bigendian=_BIG_ENDIAN,
        step=pixels.shape[1] * pixels.itemsize * (pixels.shape[2] if pixels.ndim == 3 else 1),
    )
    message.header.stamp, message.header.frame_id = stamp, frame
    message.data = np.ascontiguousarray(pixels).tobytes()
    return message
