"""Rollout bags: RolloutRecorder's files read back with rosbags, split, killed, refused; the converter.

Every bag here records real MuJoCo rollouts (arm7, reach task, default randomization) and is
checked against the arrays that were recorded. Processes that get killed or run out of disk
space run this file as a script (``_child`` at the bottom) and record the same seeded rollout,
which the test replays to know what the bag must hold.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from rosbags.highlevel import AnyReader
from rosbags.interfaces import QosDurability, QosReliability
from rosbags.rosbag2 import Reader
from rosbags.rosbag2.metadata import parse_qos
from rosbags.typesys import Stores, get_typestore
from sim_bridge_core.envs.batched import BatchedEnv
from sim_bridge_core.models import load_robot
from sim_bridge_core.randomization import Randomizer, load_spec
from sim_bridge_core.recording import RecordingError, RolloutRecorder
from sim_bridge_core.recording.convert import bag_to_arrays
from sim_bridge_core.sim.backends import make_backend
from sim_bridge_core.simulator.protocol import TASK_PAIRING, TASK_SIGNALS, control_step
from sim_bridge_core.tasks import make_task

NUM_ENVS, DT, SEED = 4, 0.02, 3
WORLDS = (0, 2)  # the recorded ("mirrored") worlds: not all of them, so row picking is tested
SPEC = Path(__file__).resolve().parents[4] / "config" / "randomization" / "default.yaml"
NS = 1_000_000_000
APPLIED = "/randomization/applied"
TYPES = {
    "/clock": "rosgraph_msgs/msg/Clock",
    APPLIED: "std_msgs/msg/Float64MultiArray",
    **{f"/env_{w}/joint_states": "sensor_msgs/msg/JointState" for w in WORLDS},
    **{f"/env_{w}/joint_trajectory": "trajectory_msgs/msg/JointTrajectory" for w in WORLDS},
    **{f"/env_{w}/task": "std_msgs/msg/Float32MultiArray" for w in WORLDS},
}
ROBOT = load_robot("arm7")
JOINTS = ROBOT.joint_names
FIELDS = (*TASK_SIGNALS, *make_task("reach", ROBOT).input_names, *TASK_PAIRING)


@dataclass(frozen=True)
class Step:
    """One control step as recorded: the state at time_ns, the targets answering it."""

    time_ns: int
    positions: np.ndarray
    velocities: np.ndarray
    efforts: np.ndarray
    task: np.ndarray
    targets: np.ndarray
    applied: np.ndarray
    applied_names: tuple[str, ...]


def rollout(steps: int) -> list[Step]:
    return list(rollout_steps(steps))


def rollout_steps(steps: int) -> Iterator[Step]:
    """A seeded rollout of 4 randomized reach worlds under random targets, with short episodes."""
    task = make_task("reach", ROBOT)
    backend = make_backend("cpu", ROBOT, NUM_ENVS, DT)
    randomizer = Randomizer(load_spec(SPEC), backend, seed=SEED)
    env = BatchedEnv(backend, task, episode_length_s=0.3, seed=SEED, randomizer=randomizer)
    rng = np.random.default_rng(SEED)
    zeros = np.zeros(NUM_ENVS)
    outcome = (zeros, zeros, zeros, zeros)
    for _ in range(steps):
        step_index = np.full(NUM_ENVS, control_step(env.time_ns, DT))
        values, names = randomizer.applied()
        step = Step(
            env.time_ns,
            env.measured_positions().copy(),
            env.measured_velocities().copy(),
            backend.joint_efforts().copy(),
            np.column_stack((*outcome[:3], env.inputs, outcome[3], step_index)),
            rng.uniform(ROBOT.lower, ROBOT.upper, (NUM_ENVS, ROBOT.num_joints)),
            values.copy(),
            tuple(names),
        )
        yield step
        result = env.step(step.targets)
        outcome = (result.reward, result.terminated, result.truncated, result.success)


def commanded(k: int) -> bool:
    """Some states go unanswered (the first one too), so 'command in effect' is tested."""
    return k != 0 and k % 7 != 3


def record_step(recorder: RolloutRecorder, k: int, step: Step) -> None:
    """The calls a training loop makes per step: applied values, state, command."""
    recorder.record_applied(step.time_ns, step.applied, step.applied_names)
    recorder.record_state(step.time_ns, step.positions, step.velocities, step.efforts, step.task)
    if commanded(k):
        recorder.record_command(step.time_ns, step.targets)


def record(directory: Path, steps: list[Step], **options: Any) -> None:
    with RolloutRecorder(directory, JOINTS, WORLDS, FIELDS, DT, **options) as recorder:
        for k, step in enumerate(steps):
            record_step(recorder, k, step)


def expected_calls(steps: list[Step]) -> list[list[tuple[str, int, Any]]]:
    """What each record call writes: (topic, time, expected content); unchanged applied values are not."""
    calls: list[list[tuple[str, int, Any]]] = []
    last: Step | None = None
    for k, s in enumerate(steps):
        t = s.time_ns
        if (
            last is None
            or last.applied_names != s.applied_names
            or not np.array_equal(last.applied, s.applied)
        ):
            calls.append([(APPLIED, t, (s.applied, s.applied_names))])
            last = s
        state = [("/clock", t, None)]
        for w in WORLDS:
            state += [(f"/env_{w}/joint_states", t, (s.positions[w], s.velocities[w], s.efforts[w]))]
            state += [(f"/env_{w}/task", t, s.task[w])]
        calls.append(state)
        if commanded(k):
            calls.append([(f"/env_{w}/joint_trajectory", t, s.targets[w]) for w in WORLDS])
    return calls


def read_bag(path: Path) -> tuple[dict[str, list[tuple[int, Any]]], dict[str, str]]:
    """Every message of a bag, deserialized by rosbags (types from the bag), by topic."""
    messages: dict[str, list[tuple[int, Any]]] = defaultdict(list)
    with AnyReader([path]) as reader:
        for connection, time_ns, raw in reader.messages():
            messages[connection.topic].append((time_ns, reader.deserialize(raw, connection.msgtype)))
        types = {c.topic: c.msgtype for c in reader.connections}
    return messages, types


def stamp_ns(stamp: Any) -> int:
    return stamp.sec * NS + stamp.nanosec


def check_message(topic: str, msg: Any, time_ns: int, expected: Any) -> None:
    if topic == "/clock":
        assert stamp_ns(msg.clock) == time_ns
    elif topic.endswith("/joint_states"):
        assert stamp_ns(msg.header.stamp) == time_ns
        assert tuple(msg.name) == JOINTS
        for got, want in zip((msg.position, msg.velocity, msg.effort), expected, strict=True):
            np.testing.assert_array_equal(got, want)
    elif topic.endswith("/task"):
        assert [(d.label, d.size) for d in msg.layout.dim] == [("env", 1), (",".join(FIELDS), len(FIELDS))]
        np.testing.assert_array_equal(msg.data, expected.astype(np.float32))
    elif topic.endswith("/joint_trajectory"):
        assert stamp_ns(msg.header.stamp) == time_ns
        assert tuple(msg.joint_names) == JOINTS and len(msg.points) == 1
        np.testing.assert_array_equal(msg.points[0].positions, expected)
        assert stamp_ns(msg.points[0].time_from_start) == round(DT * NS)
    else:
        values, names = expected
        assert [d.label for d in msg.layout.dim] == ["env", ",".join(names)]
        np.testing.assert_array_equal(msg.data.reshape(values.shape), values)


def check_bag(path: Path, steps: list[Step], whole: bool = True) -> int:
    """The bag holds exactly the messages of the first record calls, with their values; return how many calls.

    ``whole``: all calls of ``steps``; otherwise any prefix ending at a call boundary (a killed run).
    """
    messages, types = read_bag(path)
    assert types == TYPES
    calls = expected_calls(steps)
    boundaries = np.cumsum([0] + [len(call) for call in calls]).tolist()
    total = sum(len(items) for items in messages.values())
    assert total in boundaries, f"{total} messages is not a whole number of record calls"
    done = boundaries.index(total)
    if whole:
        assert done == len(calls)
    expected: dict[str, list[tuple[int, Any]]] = defaultdict(list)
    for call in calls[:done]:
        for topic, time_ns, value in call:
            expected[topic].append((time_ns, value))
    assert {t: len(v) for t, v in messages.items()} == {t: len(v) for t, v in expected.items()}
    for topic, items in expected.items():
        for (time_ns, value), (logged_ns, msg) in zip(items, messages[topic], strict=True):
            assert logged_ns == time_ns
            check_message(topic, msg, time_ns, value)
    return done


def metadata(path: Path) -> dict[str, Any]:
    return yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]


@pytest.fixture(scope="module")
def steps() -> list[Step]:
    return rollout(60)


@pytest.fixture(scope="module")
def bag(tmp_path_factory: pytest.TempPathFactory, steps: list[Step]) -> Path:
    path = tmp_path_factory.mktemp("bag") / "rollouts"
    record(path, steps)
    return path


# Contents and metadata ------------------------------------------------------------------------


def test_topics_types_and_values_round_trip(bag, steps):
    assert sum(call[0][0] == APPLIED for call in expected_calls(steps)) > 2  # applied values change at resets
    assert check_bag(bag, steps) == len(expected_calls(steps))


def test_metadata_yaml_is_what_rosbag2_on_jazzy_writes(bag, steps):
    info = metadata(bag)
    assert info["version"] == 9 and info["storage_identifier"] == "mcap" and info["ros_distro"] == "jazzy"
    assert info["compression_mode"] == "" and info["compression_format"] == ""
    names = [f["path"] for f in info["files"]]
    assert info["relative_file_paths"] == names == ["rollouts_0.mcap", "rollouts_1.mcap"]
    assert sorted(p.name for p in bag.iterdir()) == sorted([*names, "metadata.yaml"])
    messages, _ = read_bag(bag)
    counts = {t["topic_metadata"]["name"]: t["message_count"] for t in info["topics_with_message_count"]}
    assert counts == {topic: len(messages[topic]) for topic in TYPES}
    assert info["message_count"] == sum(counts.values()) == sum(f["message_count"] for f in info["files"])
    assert info["starting_time"]["nanoseconds_since_epoch"] == steps[0].time_ns
    assert info["duration"]["nanoseconds"] == steps[-1].time_ns - steps[0].time_ns

    typestore = get_typestore(Stores.ROS2_JAZZY)
    for entry in info["topics_with_message_count"]:
        topic = entry["topic_metadata"]
        assert topic["type"] == TYPES[topic["name"]] and topic["serialization_format"] == "cdr"
        assert topic["type_description_hash"] == typestore.hash_rihs01(topic["type"])
        (qos,) = parse_qos(topic["offered_qos_profiles"])
        latched = topic["name"] == APPLIED
        assert qos.reliability == QosReliability.RELIABLE
        assert qos.durability == (QosDurability.TRANSIENT_LOCAL if latched else QosDurability.VOLATILE)
        assert isinstance(topic["offered_qos_profiles"], list)  # version 9: a list, enums by name
        assert topic["offered_qos_profiles"][0]["reliability"] == "reliable"


def test_type_hashes_match_the_ros_build(bag):
    """The hashes equal those rosidl computed for the installed Jazzy message packages."""
    prefixes = [sys.prefix, *filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep))]
    for entry in metadata(bag)["topics_with_message_count"]:
        msgtype = entry["topic_metadata"]["type"]
        package, _, name = msgtype.split("/")
        found = [Path(p, "share", package, "msg", f"{name}.json") for p in prefixes]
        found = [path for path in found if path.exists()]
        if not found:
            pytest.skip(f"no type description of {msgtype} installed")
        hashes = json.loads(found[0].read_text())["type_hashes"]
        ros_hash = next(h["hash_string"] for h in hashes if h["type_name"] == msgtype)
        assert entry["topic_metadata"]["type_description_hash"] == ros_hash


def test_every_file_is_a_complete_mcap_file(bag):
    """Each listed file opens on its own (summary and footer written) with the counts metadata lists."""
    for entry in metadata(bag)["files"]:
        with Reader(bag / entry["path"]) as reader:
            assert reader.message_count == entry["message_count"]
            assert {c.topic for c in reader.connections} == set(TYPES)  # definitions in every file
            if entry["message_count"]:
                assert reader.start_time == entry["starting_time"]["nanoseconds_since_epoch"]
                assert reader.duration == entry["duration"]["nanoseconds"] + 1  # rosbags counts the end


def test_an_empty_bag_is_self_describing(tmp_path):
    RolloutRecorder(tmp_path / "rollouts", JOINTS, WORLDS, FIELDS, DT).close()
    messages, types = read_bag(tmp_path / "rollouts")
    assert types == TYPES and not messages
    assert metadata(tmp_path / "rollouts")["relative_file_paths"] == ["rollouts_0.mcap"]


def test_bad_calls_are_refused_and_write_nothing(tmp_path, steps):
    s = steps[1]
    with RolloutRecorder(tmp_path / "rollouts", JOINTS, WORLDS, FIELDS, DT) as recorder:
        recorder.record_state(s.time_ns, s.positions, s.velocities, s.efforts, s.task)
        with pytest.raises(ValueError, match="backwards"):
            recorder.record_command(s.time_ns - 1, s.targets)
        with pytest.raises(ValueError, match="positions"):
            recorder.record_state(s.time_ns, s.positions[:2], s.velocities, s.efforts, s.task)
        with pytest.raises(ValueError, match="task_signals"):
            recorder.record_state(s.time_ns, s.positions, s.velocities, s.efforts, s.task[:, :3])
    assert sum(len(v) for v in read_bag(tmp_path / "rollouts")[0].values()) == 1 + 2 * len(WORLDS)
    with pytest.raises(RecordingError, match="closed"):
        recorder.record_command(s.time_ns, s.targets)
    with pytest.raises(RecordingError, match="closed"):
        recorder.flush()
    recorder.close()  # closing twice is harmless


# Splitting --------------------------------------------------------------------------------------


def test_split_by_size_reads_back_as_one_bag(tmp_path, steps):
    limit_mb = 0.03
    record(tmp_path / "rollouts", steps, max_bag_size_mb=limit_mb)
    info = metadata(tmp_path / "rollouts")
    names = info["relative_file_paths"]
    assert len(names) >= 4 and names == [f"rollouts_{i}.mcap" for i in range(len(names))]
    sizes = [(tmp_path / "rollouts" / name).stat().st_size for name in names[1:]]
    assert all(limit_mb * 1e6 <= size < limit_mb * 1e6 + 4096 for size in sizes[:-1]), sizes
    assert check_bag(tmp_path / "rollouts", steps) == len(expected_calls(steps))
    files = info["files"][1:]  # the data files follow each other in time
    for before, after in itertools.pairwise(files):
        end = before["starting_time"]["nanoseconds_since_epoch"] + before["duration"]["nanoseconds"]
        assert end <= after["starting_time"]["nanoseconds_since_epoch"]


def test_split_by_time(tmp_path, steps):
    with RolloutRecorder(
        tmp_path / "rollouts", JOINTS, WORLDS, FIELDS, DT, flush_interval_s=0.05
    ) as recorder:
        for k, step in enumerate(steps[:20]):
            record_step(recorder, k, step)
            time.sleep(0.01)
    assert len(metadata(tmp_path / "rollouts")["files"]) >= 4
    check_bag(tmp_path / "rollouts", steps[:20])


# Killed runs ------------------------------------------------------------------------------------


def run_child(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.parametrize(
    ("moment", "kept_steps"),
    [("while-recording", 30), ("before-fsync", 30), ("before-replace", 30), ("after-replace", 40)],
)
def test_sigkill_keeps_everything_up_to_the_last_flush(tmp_path, moment, kept_steps):
    """30 steps, flush, 10 more steps, then SIGKILL while recording or inside the next flush:
    before metadata.yaml is replaced the bag is as at the first flush, after it all 40 steps are there."""
    child = run_child("kill-in-flush", str(tmp_path / "rollouts"), moment)
    _, err = child.communicate(timeout=120)
    assert child.returncode == -signal.SIGKILL, err
    check_bag(tmp_path / "rollouts", rollout(kept_steps))
    listed = set(metadata(tmp_path / "rollouts")["relative_file_paths"])
    unlisted = {p.name for p in (tmp_path / "rollouts").glob("*.mcap")} - listed
    assert unlisted == ({f"rollouts_{len(listed)}.mcap"} if kept_steps == 30 else set())


@pytest.mark.parametrize("delay_s", [0.0, 0.05, 0.17])
def test_sigkill_at_any_moment_leaves_a_readable_prefix(tmp_path, delay_s):
    """Killed from outside while recording and splitting (by size, time and flush()): the bag opens and
    holds a whole number of record calls, at least up to the last flush the child reported."""
    child = run_child("record-until-killed", str(tmp_path / "rollouts"))
    flushed = []
    assert child.stdout is not None
    while len(flushed) < 2:
        line = child.stdout.readline()
        assert line, child.communicate()[1]
        flushed.append(int(line.split()[1]))
    time.sleep(delay_s)
    child.kill()
    out, _ = child.communicate(timeout=30)
    reports = [line.split() for line in out.splitlines()]
    flushed += [int(words[1]) for words in reports if len(words) == 2 and words[1].isdigit()]
    steps = rollout(max(flushed) + 300)
    done = check_bag(tmp_path / "rollouts", steps, whole=False)
    # Everything the child had flushed before its last report is there.
    calls = expected_calls(steps)
    flushed_calls = sum(1 for call in calls if call[0][1] <= steps[max(flushed)].time_ns)
    assert done >= flushed_calls


# Refused and failing writes ---------------------------------------------------------------------


@pytest.mark.parametrize("case", ["holds a bag", "not empty", "not a directory"])
def test_refuses_a_place_that_is_not_a_new_bag(tmp_path, steps, case):
    target = tmp_path / "rollouts"
    if case == "holds a bag":
        record(target, steps[:3])
    elif case == "not empty":
        target.mkdir()
        (target / "notes.txt").write_text("keep me")
    else:
        target.write_text("keep me")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(RecordingError) as error:
        RolloutRecorder(target, JOINTS, WORLDS, FIELDS, DT)
    message = str(error.value)
    assert str(target) in message and "\n" not in message
    assert {"holds a bag": "already holds a bag", "not empty": "not empty"}.get(case, case) in message
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_refuses_a_directory_it_cannot_write(tmp_path):
    base = Path(tempfile.mkdtemp())  # not under pytest's private (0700) base: the child may not be root
    try:
        base.chmod(0o755)
        locked = base / "locked"
        locked.mkdir(mode=0o555)
        locked.chmod(0o555)
        program = (
            "import sys\n"
            "from sim_bridge_core.recording import RecordingError, RolloutRecorder\n"
            "try:\n"
            "    RolloutRecorder(sys.argv[1], ['a'], [0], [], 0.02)\n"
            "except RecordingError as error:\n"
            "    print(error)\n"
        )
        command = [sys.executable, "-c", program, str(locked / "rollouts")]
        if os.geteuid() == 0:  # root writes anywhere: run as an unmapped user (nobody) instead
            command = ["unshare", "--user", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if os.geteuid() == 0 and result.returncode != 0 and "unshare" in result.stderr:
            pytest.skip(f"cannot drop root here: {result.stderr.strip()}")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"cannot record a bag in {locked / 'rollouts'}: Permission denied"
        assert not any(locked.iterdir())
    finally:
        shutil.rmtree(base)


def _can_mount_tmpfs() -> bool:
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", "mount -t tmpfs none /mnt"],
        capture_output=True,
    )
    return probe.returncode == 0


@pytest.mark.parametrize("limit", ["tmpfs", "rlimit"])
def test_a_full_disk_stops_recording_with_one_error_and_keeps_the_bag(tmp_path, limit):
    """tmpfs: a 400 kB file system fills up (ENOSPC); rlimit: the kernel refuses to grow a file (EFBIG)."""
    out = tmp_path / "copy"
    if limit == "tmpfs":
        if shutil.which("unshare") is None or not _can_mount_tmpfs():
            pytest.skip("no user namespaces to mount a small tmpfs in")
        mount = tmp_path / "mnt"
        mount.mkdir()
        script = 'mount -t tmpfs -o size=400k none "$1" && exec "$2" "$3" disk-full "$1/rollouts" "$4" "$5"'
        command = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh", str(mount)]
        command += [sys.executable, __file__, str(out), "0.1"]
        bag_path, error_text = str(mount / "rollouts"), "No space left on device"
    else:
        command = [sys.executable, __file__, "disk-full", str(tmp_path / "rollouts"), str(out), "1.0"]
        bag_path, error_text = str(tmp_path / "rollouts"), "File too large"
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["error"].startswith(f"cannot write {bag_path}/") and report["error"].endswith(error_text)
    assert "\n" not in report["error"]
    steps = rollout(report["steps"])
    done = check_bag(out, steps, whole=False)
    assert done >= report["flushed_calls"] > 0  # the bag is as it was at its last flush, or later
    listed = metadata(out)["relative_file_paths"]
    assert sorted(p.name for p in out.iterdir()) == sorted([*listed, "metadata.yaml"])  # no leftovers


# Converter --------------------------------------------------------------------------------------


def test_bag_to_arrays(bag, steps):
    arrays = bag_to_arrays(bag)
    assert tuple(arrays["joint_names"]) == JOINTS and tuple(arrays["task_fields"]) == FIELDS
    assert arrays["worlds"].tolist() == list(WORLDS)
    applied_names = steps[0].applied_names
    assert tuple(arrays["applied_names"]) == applied_names
    for w in WORLDS:
        prefix = f"env_{w}/"
        np.testing.assert_array_equal(arrays[prefix + "time"], [s.time_ns for s in steps])
        for key in ("positions", "velocities", "efforts"):
            np.testing.assert_array_equal(arrays[prefix + key], [getattr(s, key)[w] for s in steps])
        commands = np.full((len(steps), len(JOINTS)), np.nan)
        for k in range(len(steps)):
            answered = [j for j in range(k + 1) if commanded(j)]
            if answered:
                commands[k] = steps[answered[-1]].targets[w]
        assert np.isnan(arrays[prefix + "commands"][0]).all()
        np.testing.assert_array_equal(arrays[prefix + "commands"], commands)
        task = np.array([s.task[w] for s in steps], dtype=np.float32)
        np.testing.assert_array_equal(arrays[prefix + "task"], task)
        np.testing.assert_array_equal(arrays[prefix + "rewards"], task[:, FIELDS.index("reward")])
        assert arrays[prefix + "terminated"].dtype == bool
        np.testing.assert_array_equal(arrays[prefix + "terminated"], task[:, FIELDS.index("terminated")] == 1)
        np.testing.assert_array_equal(arrays[prefix + "truncated"], task[:, FIELDS.index("truncated")] == 1)
        assert arrays[prefix + "truncated"].any()  # episodes ended inside the recording
        np.testing.assert_array_equal(arrays[prefix + "applied"], [s.applied[w] for s in steps])


def test_convert_command_line(bag, tmp_path):
    out = tmp_path / "rollouts.npz"
    command = [sys.executable, "-m", "sim_bridge_core.recording.convert"]
    result = subprocess.run([*command, str(bag), str(out)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    expected = bag_to_arrays(bag)
    with np.load(out) as saved:
        assert sorted(saved.files) == sorted(expected)
        for key, value in expected.items():
            np.testing.assert_array_equal(saved[key], value)
    missing = tmp_path / "no_bag"
    result = subprocess.run([*command, str(missing), str(out)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot read the bag") and str(missing) in result.stderr


# Child processes (this file run as a script) ----------------------------------------------------


def _child(mode: str, directory: str, *args: str) -> None:
    if mode == "kill-in-flush":
        from sim_bridge_core.recording import bag

        def die(*_: Any) -> None:
            os.kill(os.getpid(), signal.SIGKILL)

        def replace_then_die(*paths: Any) -> None:
            replace(*paths)
            die()

        recorder = RolloutRecorder(directory, JOINTS, WORLDS, FIELDS, DT)
        for k, step in enumerate(rollout_steps(40)):
            if k == 30:
                recorder.flush()
            record_step(recorder, k, step)
        replace = os.replace
        if args[0] == "before-fsync":  # the file is complete, not yet synced nor listed
            bag._fsync = die
        elif args[0] == "before-replace":  # the new metadata.yaml is written, not yet in place
            os.replace = die
        elif args[0] == "after-replace":
            os.replace = replace_then_die
        die() if args[0] == "while-recording" else recorder.flush()
        sys.exit("not killed")
    elif mode == "record-until-killed":
        recorder = RolloutRecorder(
            directory, JOINTS, WORLDS, FIELDS, DT, max_bag_size_mb=0.25, flush_interval_s=0.2
        )
        for k, step in enumerate(rollout_steps(100_000)):
            record_step(recorder, k, step)
            if k % 150 == 149:
                recorder.flush()
                print("flushed", k, flush=True)
    elif mode == "disk-full":
        import resource

        out, max_mb = args[0], float(args[1])
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        if max_mb >= 1.0:  # the rlimit case: no file may grow past 200 kB
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, hard))
        recorder = RolloutRecorder(directory, JOINTS, WORLDS, FIELDS, DT, max_bag_size_mb=max_mb)
        steps: list[Step] = []
        flushed_calls, error = 0, ""
        for k, step in enumerate(rollout_steps(5_000)):
            steps.append(step)
            try:
                record_step(recorder, k, step)
                if k == 19:
                    recorder.flush()
                    flushed_calls = len(expected_calls(steps))
            except RecordingError as exc:
                error = str(exc)
                break
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        shutil.copytree(directory, out)
        print(json.dumps({"error": error, "steps": len(steps), "flushed_calls": flushed_calls}))


if __name__ == "__main__":
    _child(*sys.argv[1:])
