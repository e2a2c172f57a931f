"""Rollouts recorded in this process as a rosbag2 bag (MCAP storage), the way ROS 2 Jazzy writes one.

Messages are the CDR bytes of ``sim_bridge_core.simulator.wire`` (exactly what the simulator publishes), so
recording costs an encode and a copy per message, no Python message objects. rosbags' MCAP
storage writer lays out the files; this module adds what rosbags' ``Writer`` lacks:

* **Splitting.** ``Writer`` writes one file and ``metadata.yaml`` only when it is closed. Here
  the current file is finished (summary and footer written, fsynced) whenever it passes
  ``max_bag_size_mb`` or has been open ``flush_interval_s`` of wall time, and recording goes
  on in the next one, ``<name>_1.mcap``, ``<name>_2.mcap`` ... (rosbag2's multi-file layout).
* **Surviving a kill.** After every finished file, ``metadata.yaml`` is replaced atomically
  (temporary file, fsync, rename) and lists exactly the finished files, each a complete MCAP
  file. rosbags' reader cannot open an MCAP file without its footer, so the file being written
  is never listed: a SIGKILL loses at most that file, i.e. the last ``flush_interval_s`` (and at
  most ``max_bag_size_mb``) of recording; the bag opens as it was at the last flush, no repair
  step. ``<name>_0.mcap`` holds only the message definitions, written at open, so even a run
  killed before its first flush leaves a self-describing (empty) bag.

Flushes happen inside the ``record_*`` calls (no thread), and ``flush()`` forces one; a node's
own recording (``sim_bridge_core.ros.recording``) calls its ``BagWriter`` from a writer thread,
so its callbacks never wait for them. A failed
write raises ``RecordingError``, closes the recorder and removes the unlisted files (their space
is worth more to the rest of the run); the bag stays as at its last flush.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml
from numpy.typing import ArrayLike
from rosbags.interfaces import (
    Connection,
    ConnectionExtRosbag2,
    MessageDefinition,
    MessageDefinitionFormat,
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.rosbag2.enums import CompressionMode
from rosbags.rosbag2.metadata import dump_qos_v9
from rosbags.rosbag2.storage_mcap import McapWriter
from rosbags.typesys import Stores, get_typestore

from sim_bridge_core.config import ConfigError
from sim_bridge_core.simulator.wire import JointStateEncoder, JointTrajectoryEncoder, MultiArrayEncoder

if TYPE_CHECKING:
    from rosbags.typesys.store import Typestore

BAG_VERSION = 9  # the metadata version rosbag2 writes on Jazzy (QoS as a YAML list, enums by name)
ROS_DISTRO = "jazzy"
ROLLOUTS = "rollouts"  # a run folder's bag
CLOCK_TOPIC = "/clock"
APPLIED_TOPIC = "/randomization/applied"
CLOCK_TYPE = "rosgraph_msgs/msg/Clock"
JOINT_STATE_TYPE = "sensor_msgs/msg/JointState"
TRAJECTORY_TYPE = "trajectory_msgs/msg/JointTrajectory"
TASK_TYPE = "std_msgs/msg/Float32MultiArray"
APPLIED_TYPE = "std_msgs/msg/Float64MultiArray"
IMU_TYPE = "sensor_msgs/msg/Imu"
IMAGE_TYPE = "sensor_msgs/msg/Image"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
# command_interface -> the type of its command messages
COMMAND_TYPES = {"trajectory": TRAJECTORY_TYPE, "position": "std_msgs/msg/Float64MultiArray"}

_NS = 1_000_000_000
_BYTES_PER_MB = 1_000_000
# An MCAP message record adds 31 bytes to the payload and its chunk's message index 16 more.
_RECORD_OVERHEAD = 31 + 16
_CLOCK = struct.Struct("<iI")  # after the CDR header: builtin_interfaces/Time sec, nanosec
_CDR_LE = b"\x00\x01\x00\x00"
# RMW_DURATION_INFINITE: what a Jazzy publisher with default deadline/lifespan/lease reports.
_INFINITE = QosTime(9223372036, 854775807)


def _offered(depth: int, durability: QosDurability) -> Qos:
    """A reliable keep-last profile as the simulator's publishers offer it."""
    return Qos(
        QosHistory.KEEP_LAST,
        depth,
        QosReliability.RELIABLE,
        durability,
        _INFINITE,
        _INFINITE,
        QosLiveliness.AUTOMATIC,
        _INFINITE,
        False,
    )


STREAM_QOS = _offered(10, QosDurability.VOLATILE)  # /clock, states, commands, task
LATCHED_QOS = _offered(1, QosDurability.TRANSIENT_LOCAL)  # /randomization/applied


def world_topics(world: int) -> tuple[str, str, str]:
    """The joint_states, joint_trajectory and task topics of a recorded world."""
    return f"/env_{world}/joint_states", f"/env_{world}/joint_trajectory", f"/env_{world}/task"


def prepare_output_dir(output_dir: str, key: str = "policy.output_dir") -> Path:
    """The run folder (default ``runs/<timestamp>``), created and checked writable: ConfigError
    naming the setting ``key`` otherwise."""
    path = Path(output_dir or time.strftime("runs/%Y%m%d-%H%M%S")).expanduser().resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write_test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"{key}: {path} is not writable: {exc.strerror or exc}") from exc
    return path


def rollouts_dir(output_dir: Path) -> Path:
    """``rollouts/``, or ``rollouts_<k>/`` for a resumed run (a bag is never appended to)."""
    path, k = output_dir / ROLLOUTS, 1
    while path.exists():
        path, k = output_dir / f"{ROLLOUTS}_{k}", k + 1
    return path


def camera_topics(name: str, depth: bool) -> list[tuple[str, str]]:
    """(topic in one world's namespace, message type) of a camera's streams: the image, the depth
    image when the camera has one, and camera_info (docs/recording.md, "Camera streams")."""
    topics = [(f"{name}/image_raw", IMAGE_TYPE)]
    if depth:
        topics.append((f"{name}/depth/image_raw", IMAGE_TYPE))
    return [*topics, (f"{name}/camera_info", CAMERA_INFO_TYPE)]


class RecordingError(RuntimeError):
    """The bag cannot be created or written; the message is one line naming the path."""


@dataclass
class _Topic:
    connection: Connection
    qos: Qos
    in_file: int = 0  # messages in the file being written
    finished: int = 0  # messages in finished (listed) files


@dataclass(frozen=True)
class _FileInfo:
    name: str
    start_ns: int
    duration_ns: int
    messages: int


def clock_bytes(time_ns: int) -> bytes:
    """rosgraph_msgs/Clock CDR bytes (wire.py has no Clock encoder; it is one Time)."""
    sec, nanosec = divmod(time_ns, _NS)
    return _CDR_LE + _CLOCK.pack(sec, nanosec)


def _fsync(path: Path) -> None:
    """Push a file (or a directory entry) to disk, so a listed file survives more than a kill."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BagWriter:
    """A rosbag2 directory (MCAP storage) of serialized messages on topics declared up front.

    ``write(topic, time_ns, data)`` logs one message's CDR bytes at ``time_ns``; files split and
    ``metadata.yaml`` follows as the module docstring says. Call from one thread.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        topics: Sequence[tuple[str, str, Qos]],
        *,
        max_bag_size_mb: float = 64.0,
        flush_interval_s: float = 30.0,
    ) -> None:
        self.directory = Path(directory)
        self.max_bag_size_mb = float(max_bag_size_mb)
        self.flush_interval_s = float(flush_interval_s)
        if not (self.max_bag_size_mb > 0 and self.flush_interval_s > 0):
            raise ValueError("max_bag_size_mb and flush_interval_s must be positive")
        names = [name for name, _, _ in topics]
        if len(set(names)) != len(names):
            raise ValueError(f"topics must be distinct, got {names}")
        self._prepare_directory()
        typestore = get_typestore(Stores.ROS2_JAZZY)
        self._topics = [
            self._topic(typestore, index, name, msgtype, qos, self)
            for index, (name, msgtype, qos) in enumerate(topics)
        ]
        self._by_name = {topic.connection.topic: topic for topic in self._topics}

        self._files: list[_FileInfo] = []
        self._created: list[Path] = []  # every MCAP file this writer made ...
        self._listed: set[str] = set()  # ... and those the metadata.yaml on disk lists
        self._storage: McapWriter | None = None
        self._error: str | None = None
        self._target = self.directory  # the path named when a write fails
        # The file being written: bytes so far, first and last log time, wall time of its first message.
        self._file_overhead = 0
        self._file_bytes = 0
        self._file_start_ns: int | None = None
        self._file_end_ns = 0
        self._file_first_write = 0.0
        with self._writing():
            self._start_file()  # <name>_0.mcap: definitions only, listed at once
            self._finish_file()
            # Header, definitions (in the first chunk and the summary) and footer: in every file.
            self._file_overhead = (self.directory / self._files[0].name).stat().st_size
            self._start_file()

    def write(self, topic: str, time_ns: int, data: bytes) -> None:
        """Log one message (CDR bytes) on a declared topic; RecordingError if the write fails."""
        self.write_group([(topic, time_ns, data)])

    def write_group(self, messages: Sequence[tuple[str, int, bytes]]) -> None:
        """Log (topic, time_ns, CDR bytes) messages that belong together: a split never parts them."""
        self._check_open()
        entries = []
        for topic, _, _ in messages:
            entry = self._by_name.get(topic)
            if entry is None:
                raise ValueError(f"topic {topic} was not declared (declared: {', '.join(self._by_name)})")
            entries.append(entry)
        with self._writing():
            for entry, (_, time_ns, data) in zip(entries, messages, strict=True):
                self._write(entry, int(time_ns), data)
            self._maybe_flush()

    def flush(self) -> None:
        """Finish the current file and list it: everything recorded so far survives a kill."""
        self._check_open()
        with self._writing():
            if self._file_messages:
                self._finish_file()
                self._start_file()

    def close(self) -> None:
        """Finish the bag; the file in progress is listed, or removed when it holds nothing."""
        if self._storage is None:
            return
        with self._writing():
            if self._file_messages:
                self._finish_file()
            else:
                storage, self._storage = self._storage, None
                storage.abort()
                storage.path.unlink()

    @property
    def closed(self) -> bool:
        """True after close() or after a write failed (RecordingError)."""
        return self._storage is None

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()  # also after an exception: what was recorded stays readable

    # Internals ------------------------------------------------------------------------------

    def _prepare_directory(self) -> None:
        """Create the bag directory, or accept an empty one; never write into another bag."""
        path = self.directory
        if path.exists() and not path.is_dir():
            raise RecordingError(f"cannot record a bag at {path}: it is not a directory")
        if path.is_dir():
            try:
                entries = sorted(p.name for p in path.iterdir())
            except OSError as exc:
                raise RecordingError(f"cannot record a bag in {path}: {exc.strerror}") from exc
            if "metadata.yaml" in entries or any(e.endswith((".mcap", ".db3")) for e in entries):
                raise RecordingError(f"cannot record a bag in {path}: it already holds a bag")
            if entries:
                raise RecordingError(f"cannot record a bag in {path}: it is not empty ({entries[0]}, ...)")
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe = path / ".write_test"
            probe.touch()
            probe.unlink()
        except OSError as exc:
            raise RecordingError(f"cannot record a bag in {path}: {exc.strerror}") from exc

    @staticmethod
    def _topic(typestore: Typestore, index: int, name: str, msgtype: str, qos: Qos, owner: object) -> _Topic:
        msgdef, _ = typestore.generate_msgdef(msgtype, ros_version=2)
        connection = Connection(
            id=index + 1,
            topic=name,
            msgtype=msgtype,
            msgdef=MessageDefinition(MessageDefinitionFormat.MSG, msgdef),
            digest=typestore.hash_rihs01(msgtype),
            msgcount=0,
            ext=ConnectionExtRosbag2(serialization_format="cdr", offered_qos_profiles=[qos]),
            owner=owner,
        )
        return _Topic(connection, qos)

    def _check_open(self) -> None:
        if self._storage is None:
            raise RecordingError(self._error or f"recorder of {self.directory} is closed")

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Turn a failing write into one RecordingError; the bag stays as at its last flush.

        Files not listed in metadata.yaml are removed: no reader would open them, and on a full
        disk the space is better left to the rest of the run (its checkpoints).
        """
        try:
            yield
        except OSError as exc:
            self._error = f"cannot write {self._target}: {exc.strerror or exc}"
            storage, self._storage = self._storage, None
            if storage is not None:
                with suppress(OSError):
                    storage.abort()
            for path in self._created:
                if path.name not in self._listed:
                    with suppress(OSError):
                        path.unlink()
            raise RecordingError(self._error) from exc

    def _write(self, topic: _Topic, time_ns: int, data: bytes) -> None:
        assert self._storage is not None
        self._storage.write(topic.connection, time_ns, data)
        topic.in_file += 1
        self._file_bytes += len(data) + _RECORD_OVERHEAD
        if self._file_start_ns is None:
            self._file_start_ns = time_ns
            self._file_first_write = time.monotonic()
        self._file_end_ns = time_ns

    @property
    def _file_messages(self) -> int:
        return sum(topic.in_file for topic in self._topics)

    def _maybe_flush(self) -> None:
        """Split when the file is full or its first message waited flush_interval_s (wall time)."""
        if self._file_start_ns is None:
            return
        full = self._file_bytes >= self.max_bag_size_mb * _BYTES_PER_MB
        if full or time.monotonic() - self._file_first_write >= self.flush_interval_s:
            self._finish_file()
            self._start_file()

    def _start_file(self) -> None:
        path = self.directory / f"{self.directory.name}_{len(self._files)}.mcap"
        self._target = path
        # rosbags' MCAP writer always creates <dir>/<dir name>.mcap; a split bag needs one name
        # per file, so the new file is renamed at once (the open handle follows it).
        storage = self._storage = McapWriter(self.directory, CompressionMode.NONE)
        self._created.append(storage.path)
        storage.path.rename(path)
        storage.path = self._created[-1] = path
        added: set[str] = set()
        for topic in self._topics:
            connection = topic.connection
            if connection.msgtype not in added:
                storage.add_msgtype(connection)
                added.add(connection.msgtype)
            storage.add_connection(connection, yaml.safe_dump(dump_qos_v9([topic.qos]), sort_keys=False))
        self._file_bytes = self._file_overhead
        self._file_start_ns = None
        self._file_end_ns = 0
        self._file_first_write = 0.0

    def _finish_file(self) -> None:
        """Write the current file's summary and footer, then list it in metadata.yaml."""
        storage = self._storage
        assert storage is not None
        start = self._file_start_ns
        duration = 0 if start is None else self._file_end_ns - start
        info = _FileInfo(storage.path.name, start or 0, duration, self._file_messages)
        counts = {topic.connection.topic: topic.in_file for topic in self._topics}
        storage.close(BAG_VERSION, yaml.safe_dump(self._bag_info([info], counts), sort_keys=False))
        self._storage = None
        _fsync(storage.path)
        self._files.append(info)
        for topic in self._topics:
            topic.finished += topic.in_file
            topic.in_file = 0
        self._write_metadata()
        self._target = self.directory

    def _write_metadata(self) -> None:
        """Replace metadata.yaml atomically, so a kill leaves either the old or the new listing."""
        counts = {topic.connection.topic: topic.finished for topic in self._topics}
        text = yaml.safe_dump(
            {"rosbag2_bagfile_information": self._bag_info(self._files, counts)}, sort_keys=False
        )
        path = self.directory / "metadata.yaml"
        temporary = path.with_name("metadata.yaml.tmp")
        self._target = path
        try:
            with open(temporary, "w", encoding="utf-8") as stream:
                stream.write(text)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, path)
            self._listed = {f.name for f in self._files}
        except OSError:
            with suppress(OSError):
                temporary.unlink()
            raise
        with suppress(OSError):  # not every file system can fsync a directory
            _fsync(self.directory)

    def _bag_info(self, files: Sequence[_FileInfo], counts: dict[str, int]) -> dict[str, Any]:
        """rosbag2_bagfile_information as rosbag2 on Jazzy writes it (metadata version 9)."""
        used = [f for f in files if f.messages]
        start = min((f.start_ns for f in used), default=0)
        end = max((f.start_ns + f.duration_ns for f in used), default=start)

        def span(start_ns: int, duration_ns: int) -> dict[str, Any]:
            return {
                "starting_time": {"nanoseconds_since_epoch": start_ns},
                "duration": {"nanoseconds": duration_ns},
            }

        return {
            "version": BAG_VERSION,
            "storage_identifier": "mcap",
            "duration": {"nanoseconds": end - start},
            "starting_time": {"nanoseconds_since_epoch": start},
            "message_count": sum(f.messages for f in files),
            "topics_with_message_count": [
                {
                    "topic_metadata": {
                        "name": topic.connection.topic,
                        "type": topic.connection.msgtype,
                        "serialization_format": "cdr",
                        "offered_qos_profiles": dump_qos_v9([topic.qos]),
                        "type_description_hash": topic.connection.digest,
                    },
                    "message_count": counts[topic.connection.topic],
                }
                for topic in self._topics
            ],
            "compression_format": "",
            "compression_mode": "",
            "relative_file_paths": [f.name for f in files],
            "files": [
                {"path": f.name, **span(f.start_ns, f.duration_ns), "message_count": f.messages}
                for f in files
            ],
            "custom_data": None,
            "ros_distro": ROS_DISTRO,
        }


class RolloutRecorder:
    """Records the mirrored worlds of a batched simulation into a rosbag2 directory (MCAP).

    Topics, at the root namespace as the simulator names them: ``/clock``; per recorded world
    ``/env_<i>/joint_states``, ``/env_<i>/joint_trajectory`` (the command: one point,
    ``control_dt`` ahead, stamped with the state it answers) and ``/env_<i>/task`` (one row of
    batch/task: dim[0] ``env``, dim[1] the comma-separated ``task_fields``); and
    ``/randomization/applied`` (all worlds). Every message is logged at the sim time it
    belongs to, which must never decrease. Call from one thread.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        joint_names: Sequence[str],
        worlds: Sequence[int],
        task_fields: Sequence[str],
        control_dt: float,
        *,
        max_bag_size_mb: float = 64.0,
        flush_interval_s: float = 30.0,
    ) -> None:
        self.directory = Path(directory)
        self.joint_names = tuple(joint_names)
        self.worlds = tuple(int(w) for w in worlds)
        self.task_fields = tuple(task_fields)
        self.control_dt = float(control_dt)
        if len(set(self.worlds)) != len(self.worlds) or any(w < 0 for w in self.worlds):
            raise ValueError(f"worlds must be distinct non-negative indices, got {list(worlds)}")
        if not self.control_dt > 0:
            raise ValueError("control_dt must be positive")
        self._rows = np.array(self.worlds, dtype=np.intp)
        self._step_ns = round(self.control_dt * _NS)
        self._state = JointStateEncoder(self.joint_names)
        self._command = JointTrajectoryEncoder(self.joint_names)
        self._task = MultiArrayEncoder(np.float32, ("env", ",".join(self.task_fields)))
        self._applied: tuple[tuple[str, ...], np.ndarray] | None = None
        self._last_ns = 0
        kinds = (JOINT_STATE_TYPE, TRAJECTORY_TYPE, TASK_TYPE)
        self._world_topics = [world_topics(w) for w in self.worlds]
        topics = [(CLOCK_TOPIC, CLOCK_TYPE, STREAM_QOS)]
        topics += [
            (name, kind, STREAM_QOS)
            for names in self._world_topics
            for name, kind in zip(names, kinds, strict=True)
        ]
        topics.append((APPLIED_TOPIC, APPLIED_TYPE, LATCHED_QOS))
        self.bag = BagWriter(
            self.directory, topics, max_bag_size_mb=max_bag_size_mb, flush_interval_s=flush_interval_s
        )

    def record_state(
        self,
        time_ns: int,
        positions: ArrayLike,
        velocities: ArrayLike,
        efforts: ArrayLike,
        task_signals: ArrayLike,
    ) -> None:
        """The state at ``time_ns``: full (N, J) arrays and (N, F) task signals; also writes /clock."""
        time_ns = self._check_time(time_ns)
        joints = len(self.joint_names)
        positions = self._pick(positions, "positions", joints)
        velocities = self._pick(velocities, "velocities", joints)
        efforts = self._pick(efforts, "efforts", joints)
        task = self._pick(task_signals, "task_signals", len(self.task_fields))
        group = [(CLOCK_TOPIC, time_ns, clock_bytes(time_ns))]
        for k, (state_topic, _, task_topic) in enumerate(self._world_topics):
            state = self._state.encode(time_ns, positions[k], velocities[k], efforts[k])
            group += [
                (state_topic, time_ns, state),
                (task_topic, time_ns, self._task.encode(task[k : k + 1])),
            ]
        self.bag.write_group(group)

    def record_command(self, time_ns: int, targets: ArrayLike) -> None:
        """The (N, J) position targets sent in answer to the state at ``time_ns``."""
        time_ns = self._check_time(time_ns)
        targets = self._pick(targets, "targets", len(self.joint_names))
        self.bag.write_group(
            [
                (command_topic, time_ns, self._command.encode(time_ns, targets[k], self._step_ns))
                for k, (_, command_topic, _) in enumerate(self._world_topics)
            ]
        )

    def record_applied(self, time_ns: int, values: ArrayLike, names: Sequence[str]) -> None:
        """The (N, P) randomization values in effect and their P names; repeats are not written."""
        time_ns = self._check_time(time_ns)
        names = tuple(names)
        values = np.array(values, dtype=np.float64)  # a copy, compared with the next call
        if values.ndim != 2 or values.shape[1] != len(names):
            raise ValueError(f"values must be (N, {len(names)}) for {len(names)} names, got {values.shape}")
        if self._applied is not None and self._applied[0] == names:
            if np.array_equal(self._applied[1], values, equal_nan=True):
                return
        data = MultiArrayEncoder(np.float64, ("env", ",".join(names))).encode(values)
        self.bag.write(APPLIED_TOPIC, time_ns, data)
        self._applied = (names, values)

    def flush(self) -> None:
        """Finish the current file and list it: everything recorded so far survives a kill."""
        self.bag.flush()

    def close(self) -> None:
        """Finish the bag; the file in progress is listed, or removed when it holds nothing."""
        self.bag.close()

    @property
    def closed(self) -> bool:
        """True after close() or after a write failed (RecordingError)."""
        return self.bag.closed

    def __enter__(self) -> RolloutRecorder:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()  # also after an exception: what was recorded stays readable

    def _check_time(self, time_ns: int) -> int:
        time_ns = int(time_ns)
        if time_ns < self._last_ns:
            raise ValueError(f"time went backwards: {time_ns} ns after {self._last_ns} ns")
        self._last_ns = time_ns
        return time_ns

    def _pick(self, array: ArrayLike, what: str, width: int) -> np.ndarray:
        """The recorded worlds' rows of an (N, width) array."""
        array = np.asarray(array)
        worlds = self._rows.max(initial=-1) + 1
        if array.ndim != 2 or array.shape[1] != width or array.shape[0] < worlds:
            raise ValueError(f"{what} must be (N >= {worlds}, {width}), got {array.shape}")
        return array[self._rows]


__all__ = [
    "APPLIED_TOPIC",
    "BAG_VERSION",
    "CLOCK_TOPIC",
    "LATCHED_QOS",
    "STREAM_QOS",
    "BagWriter",
    "RecordingError",
    "RolloutRecorder",
    "camera_topics",
    "clock_bytes",
    "prepare_output_dir",
    "rollouts_dir",
    "world_topics",
]
