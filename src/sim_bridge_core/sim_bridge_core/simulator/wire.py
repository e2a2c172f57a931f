"""CDR bytes for the few ROS 2 messages that carry batched data, encoded and decoded with numpy.

Turning a 1024-world JointState into Python message objects every control step costs more than
the physics, so the ROS nodes publish and subscribe serialized bytes (``publisher.publish(bytes)``,
``create_subscription(..., raw=True)``) and this module reads and writes those bytes directly.
Everything that stays fixed between steps (header layout, the encoded joint-name list, array
offsets) is built once, so encoding is mostly a memcpy of the arrays.

The format is what ROS 2 puts on the wire: the 4-byte encapsulation header ``00 01 00 00``
(little-endian XCDR1), then the fields in declaration order, each primitive aligned to its own
size counted from the byte after that header; strings are a uint32 length that counts the
trailing NUL, then the bytes and the NUL; sequences are a uint32 count, then the elements.
Decoders accept bytes after the end of the message, since DDS and rmw may pad a payload.
This module needs only numpy and the standard library, not rclpy.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

_CDR_LE = b"\x00\x01\x00\x00"
_HEADER = len(_CDR_LE)
_NS_PER_S = 1_000_000_000
_U32 = struct.Struct("<I")
_TIME = struct.Struct("<iI")  # builtin_interfaces/Time and Duration: int32 sec, uint32 nanosec
_F64 = np.dtype("<f8")
_MULTI_ARRAY_DTYPES = (np.dtype("<f4"), np.dtype("<f8"))
# Smallest encodings, used to reject absurd sequence counts before looping or allocating.
_MIN_STRING = 4
_MIN_POINT = 4 * 4 + _TIME.size
_MIN_DIM = _MIN_STRING + 2 * _U32.size


class WireError(ValueError):
    """Bytes that are not a well-formed CDR encoding of the expected message."""


class JointStateWire(NamedTuple):
    """A decoded sensor_msgs/JointState; arrays are empty where the message had none."""

    stamp_ns: int
    names: tuple[str, ...]
    position: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray


class JointTrajectoryPointWire(NamedTuple):
    """A decoded trajectory_msgs/JointTrajectoryPoint; arrays are empty where the point had none."""

    positions: np.ndarray
    velocities: np.ndarray
    accelerations: np.ndarray
    effort: np.ndarray
    time_from_start_ns: int


class JointTrajectoryWire(NamedTuple):
    """A decoded trajectory_msgs/JointTrajectory."""

    stamp_ns: int
    joint_names: tuple[str, ...]
    points: tuple[JointTrajectoryPointWire, ...]


def _split_ns(ns: int) -> tuple[int, int]:
    """(sec, nanosec) as builtin_interfaces stores them: nanosec in [0, 1e9), sec an int32."""
    sec, nanosec = divmod(int(ns), _NS_PER_S)
    if not -(2**31) <= sec < 2**31:
        raise ValueError(f"{ns} ns does not fit builtin_interfaces' int32 seconds")
    return sec, nanosec


def _encode_string(text: str) -> bytes:
    """Length (counting the NUL), bytes, NUL: no padding, so callers align before the next field."""
    raw = text.encode()
    if b"\0" in raw:
        raise ValueError(f"string {text!r} contains NUL, which CDR strings cannot carry")
    return _U32.pack(len(raw) + 1) + raw + b"\0"


def _encode_string_seq(texts: Sequence[str]) -> bytes:
    """A sequence<string> starting at a 4-aligned offset; the same bytes wherever it lands."""
    parts = [_U32.pack(len(texts))]
    size = _U32.size
    for text in texts:
        pad = -size % 4
        encoded = _encode_string(text)
        parts += (bytes(pad), encoded)
        size += pad + len(encoded)
    return b"".join(parts)


class _KnownNames:
    """An expected name list and its encoding, recognised in a message without parsing it.

    Writers may leave the alignment padding between strings uninitialised (rmw_fastrtps does),
    so when the bytes differ the comparison is repeated with the padding masked out.
    """

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)
        self.encoded = _encode_string_seq(self.names)
        self._bytes = np.frombuffer(self.encoded, np.uint8)
        self._padding = np.zeros(len(self.encoded), bool)
        size = _U32.size
        for text in self.names:
            pad = -size % 4
            self._padding[size : size + pad] = True
            size += pad + _U32.size + len(text.encode()) + 1

    def found_at(self, data: bytes | bytearray | memoryview, start: int) -> bool:
        if len(data) < start + len(self.encoded):
            return False
        exact = (
            data.startswith(self.encoded, start)
            if isinstance(data, (bytes, bytearray))
            else bytes(memoryview(data)[start : start + len(self.encoded)]) == self.encoded
        )
        if exact:
            return True
        window = np.frombuffer(data, np.uint8, len(self.encoded), start)
        return bool(np.all((window == self._bytes) | self._padding))


class _Writer:
    """Builds the fixed part of a message once; per-call data goes into the slots it reserves."""

    def __init__(self) -> None:
        self.buf = bytearray(_CDR_LE)

    def align(self, size: int) -> None:
        self.buf += bytes(-(len(self.buf) - _HEADER) % size)

    def u32(self, value: int) -> None:
        self.align(4)
        self.buf += _U32.pack(value)

    def raw(self, data: bytes) -> None:
        """Append pre-encoded strings or sequences, which all start 4-aligned."""
        self.align(4)
        self.buf += data

    def sequence(self, count: int, itemsize: int) -> int:
        """Count and padding of a sequence of numbers; return where its ``count`` elements go."""
        self.u32(count)
        if count:  # ROS 2's serializer does not align an empty sequence's (absent) elements
            self.align(itemsize)
        return len(self.buf)

    def slot(self, count: int, itemsize: int) -> int:
        """Reserve zeros for a sequence of ``count`` numbers; return the offset of the first."""
        offset = self.sequence(count, itemsize)
        self.buf += bytes(count * itemsize)
        return offset

    def time_slot(self) -> int:
        """Reserve a builtin_interfaces Time or Duration; return its offset."""
        self.align(4)
        self.buf += bytes(_TIME.size)
        return len(self.buf) - _TIME.size

    def header(self) -> int:
        """std_msgs/Header with an empty frame_id; return the offset of the stamp."""
        stamp = self.time_slot()
        self.raw(_encode_string(""))
        return stamp


class _Template:
    """A message image in a reusable buffer whose float64 slots are 8-byte aligned in memory.

    CDR places doubles at 8n bytes after the 4-byte encapsulation header, so the image starts
    4 bytes into a numpy buffer; numpy then copies into the slots without unaligned access.
    """

    def __init__(self, writer: _Writer) -> None:
        store = np.zeros(len(writer.buf) + _HEADER, np.uint8)
        self.image = store[_HEADER:]
        self.image[:] = np.frombuffer(writer.buf, np.uint8)

    def f64(self, offset: int, count: int) -> np.ndarray:
        return self.image[offset : offset + 8 * count].view(_F64)

    def put_time(self, offset: int, ns: int) -> None:
        _TIME.pack_into(self.image, offset, *_split_ns(ns))


def _fill(slot: np.ndarray, values: ArrayLike, what: str) -> None:
    """Copy ``values`` (any shape, C order) into ``slot``; refuse sizes that would broadcast."""
    array = np.asarray(values)
    if array.size != slot.size:
        raise ValueError(f"{what} has {array.size} values, expected {slot.size}")
    slot[:] = array.reshape(-1)


class JointStateEncoder:
    """sensor_msgs/JointState bytes for a fixed joint-name list, e.g. ``env_<i>/<joint>`` env-major."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)
        count = len(self.names)
        writer = _Writer()
        self._stamp = writer.header()
        writer.raw(_encode_string_seq(self.names))
        offsets = [writer.slot(count, 8) for _ in range(3)]
        self._template = _Template(writer)
        self._position, self._velocity, self._effort = (self._template.f64(o, count) for o in offsets)

    def encode(self, stamp_ns: int, position: ArrayLike, velocity: ArrayLike, effort: ArrayLike) -> bytes:
        """One message; each array holds len(names) values in any shape, e.g. (N, J), read C-order."""
        self._template.put_time(self._stamp, stamp_ns)
        _fill(self._position, position, "position")
        _fill(self._velocity, velocity, "velocity")
        _fill(self._effort, effort, "effort")
        return self._template.image.tobytes()


class JointTrajectoryEncoder:
    """One-point trajectory_msgs/JointTrajectory bytes for a fixed joint-name list (a batched command)."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)
        writer = _Writer()
        self._stamp = writer.header()
        writer.raw(_encode_string_seq(self.names))
        writer.u32(1)
        positions = writer.slot(len(self.names), 8)
        for _ in range(3):  # velocities, accelerations, effort: empty
            writer.u32(0)
        self._time_from_start = writer.time_slot()
        self._template = _Template(writer)
        self._positions = self._template.f64(positions, len(self.names))

    def encode(self, stamp_ns: int, positions: ArrayLike, time_from_start_ns: int = 0) -> bytes:
        """One message whose single point holds ``positions`` (len(names) values, read C-order)."""
        self._template.put_time(self._stamp, stamp_ns)
        self._template.put_time(self._time_from_start, time_from_start_ns)
        _fill(self._positions, positions, "positions")
        return self._template.image.tobytes()


def encode_joint_trajectory(
    names: Sequence[str],
    stamp_ns: int,
    times_ns: ArrayLike,
    positions: ArrayLike,
    velocities: ArrayLike | None = None,
    accelerations: ArrayLike | None = None,
) -> bytes:
    """A multi-point trajectory_msgs/JointTrajectory: P points at ``times_ns`` (P,) with (P, J)
    positions and, optionally, velocities and accelerations (a whole trajectory sent once)."""
    times = np.asarray(times_ns, dtype=np.int64).reshape(-1)
    fields = [np.asarray(positions, dtype=_F64).reshape(len(times), len(names))]
    for values in (velocities, accelerations):
        fields.append(None if values is None else np.asarray(values, dtype=_F64).reshape(fields[0].shape))
    writer = _Writer()
    stamp = writer.header()
    _TIME.pack_into(writer.buf, stamp, *_split_ns(stamp_ns))
    writer.raw(_encode_string_seq(names))
    writer.u32(len(times))
    for point, time_ns in enumerate(times):
        for values in (*fields, None):  # positions, velocities, accelerations, effort (none)
            count = 0 if values is None else values.shape[1]
            writer.sequence(count, 8)
            if count:
                writer.buf += values[point].tobytes()
        offset = writer.time_slot()
        _TIME.pack_into(writer.buf, offset, *_split_ns(int(time_ns)))
    return bytes(writer.buf)


class MultiArrayEncoder:
    """std_msgs/Float32MultiArray or Float64MultiArray bytes with one labelled, dense dimension per axis.

    The layout (dim[i].size = shape[i], dim[i].stride = product of shape[i:], data_offset 0) is
    encoded once and reused while the shape stays the same.
    """

    def __init__(self, dtype: DTypeLike, labels: Sequence[str]) -> None:
        self.dtype = _multi_array_dtype(dtype)
        self.labels = tuple(labels)
        self._encoded_labels = [_encode_string(label) for label in self.labels]
        self._shape: tuple[int, ...] | None = None
        self._prefix = b""

    def encode(self, data: ArrayLike) -> bytes:
        """One message holding ``data``, whose number of axes must equal the number of labels."""
        array = np.asarray(data, dtype=self.dtype)
        if array.ndim != len(self.labels):
            raise ValueError(f"data has {array.ndim} axes but there are {len(self.labels)} labels")
        if array.shape != self._shape:
            self._prefix = self._layout(array.shape)
            self._shape = array.shape
        return self._prefix + array.tobytes()

    def _layout(self, shape: tuple[int, ...]) -> bytes:
        writer = _Writer()
        writer.u32(len(shape))
        for axis, (label, size) in enumerate(zip(self._encoded_labels, shape, strict=True)):
            writer.raw(label)
            writer.u32(size)
            writer.u32(math.prod(shape[axis:]))
        writer.u32(0)  # data_offset
        writer.sequence(math.prod(shape), self.dtype.itemsize)
        return bytes(writer.buf)


def _multi_array_dtype(dtype: DTypeLike) -> np.dtype:
    resolved = np.dtype(dtype).newbyteorder("<")
    if resolved not in _MULTI_ARRAY_DTYPES:
        raise ValueError(f"multi-array dtype must be float32 or float64, got {np.dtype(dtype)}")
    return resolved


class _Reader:
    """A bounds-checked cursor over one CDR message; every failure is a WireError."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        if not isinstance(data, bytes):
            data = bytes(data)
        if len(data) < _HEADER:
            raise WireError(f"{len(data)} bytes is too short for the CDR encapsulation header")
        if data[:2] != _CDR_LE[:2]:
            raise WireError(f"encapsulation {data[:2].hex()} is not little-endian XCDR1 (0001)")
        self.data = data
        self.pos = _HEADER

    def take(self, size: int, align: int) -> int:
        """Skip alignment padding, claim ``size`` bytes and return where they start."""
        start = self.pos + (-(self.pos - _HEADER) % align)
        end = start + size
        if end > len(self.data):
            raise WireError(f"truncated at byte {start}: needs {end} bytes, message has {len(self.data)}")
        self.pos = end
        return start

    def u32(self) -> int:
        return _U32.unpack_from(self.data, self.take(4, 4))[0]

    def count(self, min_element_size: int) -> int:
        """A sequence count, refused when the rest of the message could not hold that many elements."""
        count = self.u32()
        if count * min_element_size > len(self.data) - self.pos:
            raise WireError(f"sequence count {count} at byte {self.pos - 4} exceeds the message")
        return count

    def ns(self) -> int:
        """builtin_interfaces/Time or Duration as integer nanoseconds."""
        sec, nanosec = _TIME.unpack_from(self.data, self.take(_TIME.size, 4))
        return sec * _NS_PER_S + nanosec

    def string(self) -> str:
        return self.strings_n(1)[0]

    def strings(self, known: _KnownNames | None = None) -> tuple[str, ...]:
        """A sequence<string>; an encoding of ``known.names`` is recognised, not parsed."""
        start = self.pos + -self.pos % 4
        if known is not None and known.found_at(self.data, start):
            self.pos = start + len(known.encoded)
            return known.names
        return self.strings_n(self.count(_MIN_STRING))

    def strings_n(self, count: int) -> tuple[str, ...]:
        """``count`` consecutive strings, in one tight loop since a JointState can carry thousands."""
        data, pos, size = self.data, self.pos, len(self.data)
        texts = []
        for _ in range(count):
            pos += -pos % 4  # the header is 4 bytes, so 4-alignment in the body is 4-alignment here
            if pos + 4 > size:
                raise WireError(f"truncated at byte {pos}: no room for a string length")
            (length,) = _U32.unpack_from(data, pos)
            start, pos = pos + 4, pos + 4 + length
            if pos > size:
                raise WireError(f"truncated at byte {start}: string of {length} bytes, message has {size}")
            if length == 0:  # not what ROS 2 writes, but Fast CDR reads it as ""
                texts.append("")
                continue
            if data[pos - 1] != 0:
                raise WireError(f"string at byte {start} is not NUL-terminated")
            try:
                texts.append(data[start : pos - 1].decode())
            except UnicodeDecodeError as error:
                raise WireError(f"string at byte {start} is not UTF-8: {error}") from None
        self.pos = pos
        return tuple(texts)

    def array(self, dtype: np.dtype) -> np.ndarray:
        """A sequence of numbers, copied out so it neither aliases nor pins the message."""
        count = self.count(dtype.itemsize)
        if count == 0:
            return np.empty(0, dtype)
        start = self.take(count * dtype.itemsize, dtype.itemsize)
        return np.frombuffer(self.data, dtype, count, start).copy()


def _read_joint_state(reader: _Reader, known: _KnownNames | None = None) -> JointStateWire:
    stamp_ns = reader.ns()
    reader.string()  # frame_id
    names = reader.strings(known)
    return JointStateWire(stamp_ns, names, reader.array(_F64), reader.array(_F64), reader.array(_F64))


def decode_joint_state(data: bytes | bytearray | memoryview) -> JointStateWire:
    """Decode sensor_msgs/JointState bytes, parsing every name (see JointStateDecoder for the fast path)."""
    return _read_joint_state(_Reader(data))


class JointStateDecoder:
    """Decodes JointState bytes whose names usually equal ``expected_names``, comparing them as bytes.

    When the encoded name list matches, the result's ``names`` is ``self.names`` itself (so callers
    can test ``is``); otherwise the names are parsed, exactly as decode_joint_state does.
    """

    def __init__(self, expected_names: Sequence[str]) -> None:
        self._known = _KnownNames(expected_names)
        self.names = self._known.names

    def decode(self, data: bytes | bytearray | memoryview) -> JointStateWire:
        """Decode one message."""
        return _read_joint_state(_Reader(data), self._known)


def _read_joint_trajectory(
    reader: _Reader, known: _KnownNames | None = None, max_points: int | None = None
) -> JointTrajectoryWire:
    stamp_ns = reader.ns()
    reader.string()  # frame_id
    names = reader.strings(known)
    count = reader.count(_MIN_POINT)
    if max_points is not None and count > max_points:
        raise WireError(f"trajectory has {count} points, more than the {max_points} accepted")
    points = tuple(
        JointTrajectoryPointWire(
            reader.array(_F64), reader.array(_F64), reader.array(_F64), reader.array(_F64), reader.ns()
        )
        for _ in range(count)
    )
    return JointTrajectoryWire(stamp_ns, names, points)


def decode_joint_trajectory(
    data: bytes | bytearray | memoryview, max_points: int | None = None
) -> JointTrajectoryWire:
    """Decode trajectory_msgs/JointTrajectory bytes, parsing every joint name.

    ``max_points`` refuses a longer trajectory (WireError) before decoding any point.
    """
    return _read_joint_trajectory(_Reader(data), max_points=max_points)


class JointTrajectoryDecoder:
    """Decodes JointTrajectory bytes whose joint names usually equal ``expected_names``.

    Like JointStateDecoder: a matching name list is compared as bytes and returned as ``self.names``.
    """

    def __init__(self, expected_names: Sequence[str]) -> None:
        self._known = _KnownNames(expected_names)
        self.names = self._known.names

    def decode(self, data: bytes | bytearray | memoryview) -> JointTrajectoryWire:
        """Decode one message."""
        return _read_joint_trajectory(_Reader(data), self._known)


def decode_multi_array(
    data: bytes | bytearray | memoryview, dtype: DTypeLike
) -> tuple[tuple[str, ...], np.ndarray]:
    """Decode std_msgs/Float32MultiArray (dtype float32) or Float64MultiArray (float64) bytes.

    Returns the dimension labels and the data reshaped to the dimension sizes, or flat when the
    layout has no dimensions. The data after data_offset must be exactly the product of the
    sizes; strides are not consulted (the layout is taken to be dense, as MultiArrayEncoder writes).
    """
    resolved = _multi_array_dtype(dtype)
    reader = _Reader(data)
    labels, sizes = [], []
    for _ in range(reader.count(_MIN_DIM)):
        labels.append(reader.string())
        sizes.append(reader.u32())
        reader.u32()  # stride
    offset = reader.u32()
    values = reader.array(resolved)
    if offset > values.size or (sizes and offset + math.prod(sizes) != values.size):
        raise WireError(f"layout sizes {sizes} with data_offset {offset} do not match {values.size} values")
    return tuple(labels), values[offset:].reshape(sizes) if sizes else values[offset:]
