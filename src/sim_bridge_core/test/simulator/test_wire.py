import numpy as np
import pytest
from builtin_interfaces.msg import Duration, Time
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import JointState
from sim_bridge_core.simulator.wire import (
    JointStateDecoder,
    JointStateEncoder,
    JointTrajectoryDecoder,
    JointTrajectoryEncoder,
    MultiArrayEncoder,
    WireError,
    decode_joint_state,
    decode_joint_trajectory,
    decode_multi_array,
)
from std_msgs.msg import (
    Float32MultiArray,
    Float64MultiArray,
    Header,
    MultiArrayDimension,
    MultiArrayLayout,
)
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

# Odd name lengths put every string end at a different offset mod 4 and the doubles after them
# at a different offset mod 8, so the padding rules are all exercised.
ODD_NAMES = ["a", "bc", "def", "ghij", "klmno", "gelenk_\u00e4"]
BATCH_NAMES = [f"env_{i}/joint{j + 1}" for i in range(1024) for j in range(7)]
STAMPS = [0, 1, 1_500_000_001, 1_700_000_000_123_456_789, -1]


def stamp(ns):
    sec, nanosec = divmod(ns, 1_000_000_000)
    return Time(sec=sec, nanosec=nanosec)


def duration(ns):
    sec, nanosec = divmod(ns, 1_000_000_000)
    return Duration(sec=sec, nanosec=nanosec)


def joint_state(stamp_ns, names, position, velocity, effort, frame_id=""):
    return JointState(
        header=Header(stamp=stamp(stamp_ns), frame_id=frame_id),
        name=list(names),
        position=np.ravel(position).tolist(),
        velocity=np.ravel(velocity).tolist(),
        effort=np.ravel(effort).tolist(),
    )


def multi_array(msg_type, labels, data, data_offset=0):
    data = np.asarray(data)
    dims = [
        MultiArrayDimension(label=label, size=size, stride=int(np.prod(data.shape[axis:])))
        for axis, (label, size) in enumerate(zip(labels, data.shape, strict=True))
    ]
    return msg_type(layout=MultiArrayLayout(dim=dims, data_offset=data_offset), data=data.ravel().tolist())


def assert_same_as_rclpy(ours, msg):
    """Our bytes equal rclpy's, except where rclpy leaves padding and a size-estimate tail uninitialized.

    rmw_fastrtps returns its serialized-size estimate (which may exceed the content) and does not
    clear padding, so a byte may differ only where ours is a zero, and rclpy must read ours back as
    the same message, which pins every non-padding byte.
    """
    theirs = serialize_message(msg)
    assert len(theirs) >= len(ours)
    a = np.frombuffer(ours, np.uint8)
    b = np.frombuffer(theirs, np.uint8, len(ours))
    differ = np.flatnonzero(a != b)
    assert not a[differ].any(), f"content bytes differ at {differ[a[differ] != 0]}"
    assert deserialize_message(ours, type(msg)) == msg


@pytest.fixture(scope="module")
def typestore():
    typesys = pytest.importorskip("rosbags.typesys")
    return typesys.get_typestore(typesys.Stores.ROS2_JAZZY)


def assert_canonical(typestore, ours, typename):
    """rosbags, an independent serializer that zeroes padding and checks the length, reproduces ours."""
    assert bytes(typestore.serialize_cdr(typestore.deserialize_cdr(ours, typename), typename)) == ours


def random_arrays(count, shape=None, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape or count) for _ in range(3)]


@pytest.mark.parametrize("names", [[], ["x"], ODD_NAMES, ODD_NAMES[:5]])
@pytest.mark.parametrize("stamp_ns", STAMPS)
def test_joint_state_encoder_matches_rclpy(names, stamp_ns, typestore):
    position, velocity, effort = random_arrays(len(names))
    ours = JointStateEncoder(names).encode(stamp_ns, position, velocity, effort)
    assert_same_as_rclpy(ours, joint_state(stamp_ns, names, position, velocity, effort))
    assert_canonical(typestore, ours, "sensor_msgs/msg/JointState")


def test_joint_state_encoder_reuses_its_buffer_safely():
    encoder = JointStateEncoder(ODD_NAMES)
    first = encoder.encode(1, *random_arrays(6, seed=1))
    copy = bytes(first)
    encoder.encode(2, *random_arrays(6, seed=2))
    assert first == copy


def test_joint_state_1024x7(typestore):
    position, velocity, effort = random_arrays(0, (1024, 7))
    ours = JointStateEncoder(BATCH_NAMES).encode(1_234_567_890_123, position, velocity, effort)
    assert_same_as_rclpy(ours, joint_state(1_234_567_890_123, BATCH_NAMES, position, velocity, effort))
    assert_canonical(typestore, ours, "sensor_msgs/msg/JointState")

    decoder = JointStateDecoder(BATCH_NAMES)
    for decoded in (decoder.decode(ours), decode_joint_state(ours)):
        assert decoded.stamp_ns == 1_234_567_890_123
        assert decoded.names == tuple(BATCH_NAMES)
        np.testing.assert_array_equal(decoded.position, position.ravel())
        np.testing.assert_array_equal(decoded.velocity, velocity.ravel())
        np.testing.assert_array_equal(decoded.effort, effort.ravel())
    assert decoder.decode(ours).names is decoder.names


def test_joint_state_encoder_accepts_lists_and_float32():
    encoder = JointStateEncoder(["a", "b"])
    ours = encoder.encode(5, [1, 2], np.float32([0.5, 0.25]), ((3.0,), (4.0,)))
    decoded = decode_joint_state(ours)
    np.testing.assert_array_equal(decoded.position, [1.0, 2.0])
    np.testing.assert_array_equal(decoded.velocity, [0.5, 0.25])
    np.testing.assert_array_equal(decoded.effort, [3.0, 4.0])
    assert decoded.position.dtype == np.float64


@pytest.mark.parametrize("frame_id", ["", "w", "world", "base_link"])
@pytest.mark.parametrize("with_velocity", [True, False])
def test_decode_joint_state_from_rclpy(frame_id, with_velocity):
    position, velocity, _ = random_arrays(len(ODD_NAMES))
    velocity = velocity if with_velocity else []
    msg = joint_state(1_500_000_001, ODD_NAMES, position, velocity, [], frame_id)
    data = serialize_message(msg)
    for decoded in (decode_joint_state(data), JointStateDecoder(ODD_NAMES).decode(data)):
        assert decoded.stamp_ns == 1_500_000_001
        assert decoded.names == tuple(ODD_NAMES)
        np.testing.assert_array_equal(decoded.position, position)
        np.testing.assert_array_equal(decoded.velocity, velocity)
        assert decoded.effort.shape == (0,) and decoded.effort.dtype == np.float64


def test_decoder_fast_path_ignores_padding_contents():
    """rmw may leave the padding between strings uninitialised; equal names still take the fast path."""
    decoder = JointStateDecoder(ODD_NAMES)
    data = bytearray(JointStateEncoder(ODD_NAMES).encode(3, *random_arrays(len(ODD_NAMES))))
    known = decoder._known
    start = data.find(known.encoded)
    data[start : start + len(known.encoded)] = (
        np.where(known._padding, 0xAB, np.frombuffer(known.encoded, np.uint8)).astype(np.uint8).tobytes()
    )
    assert known._padding.any()
    assert decoder.decode(bytes(data)).names is decoder.names
    data[start + 8] ^= 0x01  # a character of the first name: no longer the known list
    assert decoder.decode(bytes(data)).names is not decoder.names


def test_joint_state_decoder_parses_names_that_differ():
    decoder = JointStateDecoder(ODD_NAMES)
    for names in (ODD_NAMES[::-1], ODD_NAMES[:-1], [*ODD_NAMES, "z"], []):
        data = JointStateEncoder(names).encode(7, *random_arrays(len(names)))
        decoded = decoder.decode(data)
        assert decoded.names == tuple(names) and decoded.names is not decoder.names
        assert decoded.stamp_ns == 7


@pytest.mark.parametrize("names", [[], ["x"], ODD_NAMES, ODD_NAMES[:3]])
@pytest.mark.parametrize("time_from_start_ns", [0, 20_000_000, 2_500_000_001])
def test_joint_trajectory_encoder_matches_rclpy(names, time_from_start_ns, typestore):
    positions = np.arange(len(names), dtype=np.float64) / 3
    ours = JointTrajectoryEncoder(names).encode(1_500_000_001, positions, time_from_start_ns)
    msg = JointTrajectory(
        header=Header(stamp=stamp(1_500_000_001)),
        joint_names=list(names),
        points=[
            JointTrajectoryPoint(positions=positions.tolist(), time_from_start=duration(time_from_start_ns))
        ],
    )
    assert_same_as_rclpy(ours, msg)
    assert_canonical(typestore, ours, "trajectory_msgs/msg/JointTrajectory")


def test_joint_trajectory_batch_round_trip(typestore):
    targets = np.random.default_rng(3).standard_normal((1024, 7))
    ours = JointTrajectoryEncoder(BATCH_NAMES).encode(42, targets, 10_000_000)
    msg = JointTrajectory(
        header=Header(stamp=stamp(42)),
        joint_names=BATCH_NAMES,
        points=[
            JointTrajectoryPoint(positions=targets.ravel().tolist(), time_from_start=duration(10_000_000))
        ],
    )
    assert_same_as_rclpy(ours, msg)
    assert_canonical(typestore, ours, "trajectory_msgs/msg/JointTrajectory")
    decoder = JointTrajectoryDecoder(BATCH_NAMES)
    for decoded in (decoder.decode(ours), decode_joint_trajectory(ours)):
        assert decoded.stamp_ns == 42
        assert decoded.joint_names == tuple(BATCH_NAMES)
        (point,) = decoded.points
        np.testing.assert_array_equal(point.positions, targets.ravel())
        assert point.velocities.size == point.accelerations.size == point.effort.size == 0
        assert point.time_from_start_ns == 10_000_000
    assert decoder.decode(ours).joint_names is decoder.names


@pytest.mark.parametrize("frame_id", ["", "odd", "base"])
def test_decode_joint_trajectory_from_rclpy(frame_id):
    names = ODD_NAMES[:3]
    rng = np.random.default_rng(4)
    points = [
        JointTrajectoryPoint(
            positions=rng.standard_normal(3).tolist(), time_from_start=duration(250_000_000)
        ),
        JointTrajectoryPoint(
            positions=rng.standard_normal(3).tolist(),
            velocities=rng.standard_normal(3).tolist(),
            time_from_start=duration(1_000_000_000),
        ),
        JointTrajectoryPoint(
            positions=rng.standard_normal(3).tolist(),
            velocities=rng.standard_normal(3).tolist(),
            accelerations=rng.standard_normal(3).tolist(),
            effort=rng.standard_normal(3).tolist(),
            time_from_start=duration(2_500_000_001),
        ),
        JointTrajectoryPoint(time_from_start=duration(3_000_000_000)),
    ]
    msg = JointTrajectory(
        header=Header(stamp=stamp(1_700_000_000_123_456_789), frame_id=frame_id),
        joint_names=names,
        points=points,
    )
    data = serialize_message(msg)
    for decoded in (decode_joint_trajectory(data), JointTrajectoryDecoder(names).decode(data)):
        assert decoded.stamp_ns == 1_700_000_000_123_456_789
        assert decoded.joint_names == tuple(names)
        assert len(decoded.points) == len(points)
        for got, want in zip(decoded.points, points, strict=True):
            for field in ("positions", "velocities", "accelerations", "effort"):
                np.testing.assert_array_equal(getattr(got, field), np.array(getattr(want, field), np.float64))
                assert getattr(got, field).dtype == np.float64
            want_ns = want.time_from_start.sec * 1_000_000_000 + want.time_from_start.nanosec
            assert got.time_from_start_ns == want_ns


def test_decode_joint_trajectory_without_points():
    msg = JointTrajectory(header=Header(stamp=stamp(9)), joint_names=["a"])
    decoded = decode_joint_trajectory(serialize_message(msg))
    assert decoded == (9, ("a",), ())


MULTI_ARRAY_CASES = [
    (np.float32, Float32MultiArray, ("env", "reward,terminated,truncated,goal_x"), (1024, 4)),
    (np.float64, Float64MultiArray, ("env", "reward,terminated,truncated,goal_x"), (1024, 4)),
    (np.float64, Float64MultiArray, ("e", "xyz"), (3, 2)),  # labels that leave the doubles 4 bytes off
    (np.float64, Float64MultiArray, ("env", "k"), (0, 4)),
    (np.float32, Float32MultiArray, ("a", "bb", "ccc"), (2, 3, 5)),
]


@pytest.mark.parametrize(("dtype", "msg_type", "labels", "shape"), MULTI_ARRAY_CASES)
def test_multi_array_matches_rclpy(dtype, msg_type, labels, shape, typestore):
    data = np.random.default_rng(5).standard_normal(shape).astype(dtype)
    ours = MultiArrayEncoder(dtype, labels).encode(data)
    assert_same_as_rclpy(ours, multi_array(msg_type, labels, data))
    assert_canonical(typestore, ours, f"std_msgs/msg/{msg_type.__name__}")
    got_labels, got = decode_multi_array(ours, dtype)
    assert got_labels == labels
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, data)


def test_multi_array_encoder_follows_shape_changes():
    encoder = MultiArrayEncoder(np.float32, ("env", "k"))
    for shape in [(2, 4), (3, 4), (2, 4), (1, 1)]:
        data = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
        msg = deserialize_message(encoder.encode(data), Float32MultiArray)
        dims = [(d.label, d.size, d.stride) for d in msg.layout.dim]
        assert dims == [("env", shape[0], data.size), ("k", shape[1], shape[1])]
        np.testing.assert_array_equal(msg.data, data.ravel())


def test_decode_multi_array_from_rclpy_with_offset_and_without_layout():
    msg = multi_array(Float64MultiArray, ("env", "k"), np.ones((2, 3)), data_offset=2)
    msg.data = [9.0, 9.0, *msg.data.tolist()]
    labels, data = decode_multi_array(serialize_message(msg), np.float64)
    assert labels == ("env", "k")
    np.testing.assert_array_equal(data, np.ones((2, 3)))

    labels, data = decode_multi_array(serialize_message(Float32MultiArray(data=[1.0, 2.0])), np.float32)
    assert labels == ()
    np.testing.assert_array_equal(data, [1.0, 2.0])


@pytest.mark.parametrize(("sizes", "offset"), [((2, 4), 0), ((2, 2), 0), ((2, 3), 1), ((), 7)])
def test_decode_multi_array_rejects_sizes_that_do_not_match(sizes, offset):
    msg = Float32MultiArray(
        layout=MultiArrayLayout(
            dim=[MultiArrayDimension(label="d", size=size) for size in sizes], data_offset=offset
        ),
        data=[0.0] * 6,
    )
    with pytest.raises(WireError):
        decode_multi_array(serialize_message(msg), np.float32)


def test_encoders_reject_bad_arguments():
    encoder = JointStateEncoder(["a", "b"])
    with pytest.raises(ValueError, match="position"):
        encoder.encode(0, [1.0], [1.0, 2.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="effort"):
        encoder.encode(0, [1.0, 2.0], [1.0, 2.0], 0.0)  # a scalar must not broadcast
    with pytest.raises(ValueError, match="int32"):
        encoder.encode(2**31 * 1_000_000_000, [1.0, 2.0], [1.0, 2.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="positions"):
        JointTrajectoryEncoder(["a"]).encode(0, [1.0, 2.0])
    with pytest.raises(ValueError, match="NUL"):
        JointStateEncoder(["a\0b"])
    with pytest.raises(ValueError, match="float32 or float64"):
        MultiArrayEncoder(np.int32, ("a",))
    with pytest.raises(ValueError, match="axes"):
        MultiArrayEncoder(np.float32, ("env", "k")).encode(np.zeros(3))
    with pytest.raises(ValueError, match="float32 or float64"):
        decode_multi_array(b"", np.int64)


def test_decoders_accept_any_bytes_like():
    data = JointStateEncoder(ODD_NAMES).encode(3, *random_arrays(6))
    for wrapped in (bytearray(data), memoryview(data)):
        assert decode_joint_state(wrapped).names == tuple(ODD_NAMES)


def joint_state_bytes():
    return JointStateEncoder(["ab", "cde"]).encode(1_500_000_001, [1.0, 2.0], [3.0, 4.0], [5.0, 6.0])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "too short"),
        (b"\x00\x01\x00", "too short"),
        (b"\x00\x00\x00\x00" + joint_state_bytes()[4:], "encapsulation"),  # big-endian CDR
        (b"\x00\x07\x00\x00" + joint_state_bytes()[4:], "encapsulation"),  # XCDR2
        (joint_state_bytes()[:-1], "truncated"),
        (joint_state_bytes()[:20] + b"\xff\xff\xff\xff" + joint_state_bytes()[24:], "count"),
        (joint_state_bytes().replace(b"ab\0", b"abc"), "NUL"),
        (joint_state_bytes().replace(b"ab\0", b"a\xff\0"), "UTF-8"),
    ],
)
def test_malformed_joint_state_raises_wire_error(data, message):
    for decode in (decode_joint_state, JointStateDecoder(["ab", "cde"]).decode):
        with pytest.raises(WireError, match=message):
            decode(data)


def fuzz_cases():
    rng = np.random.default_rng(6)
    trajectory = JointTrajectory(
        header=Header(stamp=stamp(5), frame_id="f"),
        joint_names=["ab", "cde"],
        points=[
            JointTrajectoryPoint(positions=[1.0, 2.0], velocities=[0.5, 0.5], time_from_start=duration(7)),
            JointTrajectoryPoint(positions=[3.0, 4.0], effort=[0.0, 1.0], time_from_start=duration(9)),
        ],
    )
    trajectory_bytes = serialize_message(trajectory)
    # rmw_fastrtps appends its size estimate's slack; cut it so that every shorter prefix is truncated
    trajectory_bytes = trajectory_bytes[: _content_length(trajectory_bytes, trajectory)]
    multi = MultiArrayEncoder(np.float64, ("env", "xyz")).encode(rng.standard_normal((2, 3)))
    return [
        ("joint_state", joint_state_bytes(), decode_joint_state),
        ("joint_state_fast", joint_state_bytes(), JointStateDecoder(["ab", "cde"]).decode),
        (
            "trajectory_one_point",
            JointTrajectoryEncoder(["ab", "cde"]).encode(3, [1, 2], 4),
            decode_joint_trajectory,
        ),
        ("trajectory_rclpy", trajectory_bytes, decode_joint_trajectory),
        ("trajectory_fast", trajectory_bytes, JointTrajectoryDecoder(["ab", "cde"]).decode),
        ("multi_array", multi, lambda data: decode_multi_array(data, np.float64)),
    ]


def _content_length(data, msg):
    """The shortest prefix that rclpy reads back as ``msg``: where the message really ends."""
    return next(n for n in range(len(data) + 1) if _rclpy_reads(data[:n], msg))


def _rclpy_reads(data, msg):
    try:
        return deserialize_message(data, type(msg)) == msg
    except Exception:  # rclpy raises RMWError, which is not importable by a stable name
        return False


FUZZ_CASES = [pytest.param(data, decode, id=name) for name, data, decode in fuzz_cases()]


@pytest.mark.parametrize(("data", "decode"), FUZZ_CASES)
def test_every_truncation_raises_wire_error(data, decode):
    decode(data)
    for length in range(len(data)):
        with pytest.raises(WireError):
            decode(data[:length])


@pytest.mark.parametrize(("data", "decode"), FUZZ_CASES)
def test_garbled_bytes_decode_or_raise_wire_error(data, decode):
    rng = np.random.default_rng(7)
    for _ in range(3000):
        garbled = bytearray(data)
        for position in rng.integers(0, len(data), rng.integers(1, 4)):
            garbled[position] = rng.integers(0, 256) if rng.random() < 0.5 else garbled[position] ^ 0xFF
        try:
            decode(bytes(garbled))
        except WireError:
            pass
