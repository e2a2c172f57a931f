"""Rollout bags to NumPy arrays: ``python -m sim_bridge_core.recording.convert BAG_DIR OUT.npz``.

The bag is read through rosbags' rosbag2 reader (all files of a split bag, in order) and the
CDR bytes are decoded with ``sim_bridge_core.simulator.wire``'s numpy decoders. Layout, per recorded
world ``i`` with T joint states, J joints, F task fields and P randomization parameters:

* ``joint_names`` (J,), ``task_fields`` (F,), ``worlds`` (W,) and, when the bag has
  /randomization/applied, ``applied_names`` (P,);
* ``env_<i>/time`` (T,) int64: sim time in ns of each joint state;
* ``env_<i>/positions``, ``velocities``, ``efforts`` (T, J) float64;
* ``env_<i>/commands`` (T, J) float64: the first point of the last command stamped at or
  before each state (with lockstep control, the action computed from that state); NaN before
  the first command and for joints a command did not name;
* ``env_<i>/task`` (T, F) float32: the task row of the same time (NaN where there is none);
  ``rewards`` (T,) float32, ``terminated`` and ``truncated`` (T,) bool are its columns, i.e.
  the outcome of the step that ended at ``time``;
* ``env_<i>/applied`` (T, P) float64: the randomization values in effect for world i at each
  state (NaN before the first message, or for parameters not in effect).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import Reader, ReaderError

from sim_bridge_core.recording.bag import APPLIED_TOPIC, RecordingError
from sim_bridge_core.simulator.wire import (
    JointStateDecoder,
    JointTrajectoryDecoder,
    JointTrajectoryPointWire,
    WireError,
    decode_joint_state,
    decode_joint_trajectory,
    decode_multi_array,
)

_WORLD_TOPIC = re.compile(r"^/env_(\d+)/(joint_states|joint_trajectory|task)$")
_Stamped = tuple[int, np.ndarray]


class _Collected:
    """Decoded messages by world, in the order the reader yields them (time order per file)."""

    def __init__(self) -> None:
        self.joint_names: tuple[str, ...] | None = None
        self.task_fields: tuple[str, ...] | None = None
        self.states: dict[int, list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]] = defaultdict(list)
        self.commands: dict[int, list[_Stamped]] = defaultdict(list)
        self.tasks: dict[int, list[_Stamped]] = defaultdict(list)
        self.applied: list[tuple[int, tuple[str, ...], np.ndarray]] = []
        self._state_decoder: JointStateDecoder | None = None
        self._command_decoder: JointTrajectoryDecoder | None = None

    def add(self, topic: str, time_ns: int, data: bytes) -> None:
        if topic == APPLIED_TOPIC:
            labels, values = decode_multi_array(data, np.float64)
            if values.ndim != 2:
                raise RecordingError(f"{topic}: expected an (env, parameter) layout, got {values.shape}")
            self.applied.append((time_ns, _names(labels), values))
            return
        match = _WORLD_TOPIC.match(topic)
        if match is None:
            return
        world, kind = int(match.group(1)), match.group(2)
        if kind == "joint_states":
            self._add_state(topic, world, time_ns, data)
        elif kind == "joint_trajectory":
            decoder = self._command_decoder
            command = decoder.decode(data) if decoder else decode_joint_trajectory(data)
            if command.points:
                self.commands[world].append((time_ns, self._by_joint(command.joint_names, command.points[0])))
        else:
            labels, values = decode_multi_array(data, np.float32)
            fields = _names(labels)
            if self.task_fields is None:
                self.task_fields = fields
            elif fields != self.task_fields:
                raise RecordingError(f"{topic}: task fields {fields} differ from {self.task_fields}")
            if values.size != len(fields):
                raise RecordingError(f"{topic}: {values.size} values for {len(fields)} task fields")
            self.tasks[world].append((time_ns, values.reshape(-1)))

    def _add_state(self, topic: str, world: int, time_ns: int, data: bytes) -> None:
        if self._state_decoder is None:
            state = decode_joint_state(data)
            self.joint_names = state.names
            self._state_decoder = JointStateDecoder(state.names)
            self._command_decoder = JointTrajectoryDecoder(state.names)
        else:
            state = self._state_decoder.decode(data)
            if state.names is not self._state_decoder.names:
                raise RecordingError(f"{topic}: joint names {state.names} differ from {self.joint_names}")
        self.states[world].append((time_ns, state.position, state.velocity, state.effort))

    def _by_joint(self, names: Sequence[str], point: JointTrajectoryPointWire) -> np.ndarray:
        """A trajectory point's positions in joint_names order (a command may name joints in any order)."""
        if self.joint_names is None or tuple(names) == self.joint_names:
            return point.positions
        row = np.full(len(self.joint_names), np.nan)
        index = {name: k for k, name in enumerate(names)}
        for k, name in enumerate(self.joint_names):
            if name in index and index[name] < point.positions.size:
                row[k] = point.positions[index[name]]
        return row


def _names(labels: Sequence[str]) -> tuple[str, ...]:
    """Column names from a (env, names) multi-array layout: dim[1]'s comma-separated label."""
    return tuple(labels[1].split(",")) if len(labels) == 2 and labels[1] else ()


def _in_effect(at: np.ndarray, times: np.ndarray, rows: np.ndarray, width: int) -> np.ndarray:
    """For each time in ``at``, the last row stamped at or before it; NaN before the first."""
    out = np.full((at.size, width), np.nan)
    index = np.searchsorted(times, at, side="right") - 1
    valid = index >= 0
    out[valid] = rows[index[valid]]
    return out


def _same_time(at: np.ndarray, times: np.ndarray, rows: np.ndarray, width: int) -> np.ndarray:
    """For each time in ``at``, the row stamped exactly then; NaN where there is none."""
    out = np.full((at.size, width), np.nan, dtype=np.float32)
    if times.size:
        index = np.minimum(np.searchsorted(times, at), times.size - 1)
        found = times[index] == at
        out[found] = rows[index[found]]
    return out


def _stack(series: list[_Stamped], width: int) -> tuple[np.ndarray, np.ndarray]:
    """Times (K,) and rows (K, width), sorted by time (stable, so equal stamps keep their order)."""
    times = np.array([t for t, _ in series], dtype=np.int64)
    rows = np.array([r for _, r in series], dtype=np.float64).reshape(len(series), width)
    order = np.argsort(times, kind="stable")
    return times[order], rows[order]


def bag_to_arrays(bag_dir: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Per-world arrays of a rollout bag (layout in the module docstring)."""
    path = Path(bag_dir)
    collected = _Collected()
    try:
        with Reader(path) as reader:
            for connection, time_ns, data in reader.messages():
                collected.add(connection.topic, time_ns, data)
    except (ReaderError, OSError, WireError) as exc:
        raise RecordingError(f"cannot read the bag {path}: {exc}") from exc

    joint_names = collected.joint_names or ()
    task_fields = collected.task_fields or ()
    worlds = sorted(collected.states)
    arrays: dict[str, np.ndarray] = {
        "joint_names": np.array(joint_names, dtype=str),
        "task_fields": np.array(task_fields, dtype=str),
        "worlds": np.array(worlds, dtype=np.int64),
    }
    applied_names = list(dict.fromkeys(name for _, names, _ in collected.applied for name in names))
    if collected.applied:
        arrays["applied_names"] = np.array(applied_names, dtype=str)
    columns = {name: k for k, name in enumerate(applied_names)}
    joints, fields = len(joint_names), len(task_fields)
    for world in worlds:
        prefix = f"env_{world}/"
        states = sorted(collected.states[world], key=lambda s: s[0])
        time = np.array([s[0] for s in states], dtype=np.int64)
        arrays[prefix + "time"] = time
        for k, key in enumerate(("positions", "velocities", "efforts"), start=1):
            arrays[prefix + key] = np.array([s[k] for s in states], dtype=np.float64).reshape(
                time.size, joints
            )
        arrays[prefix + "commands"] = _in_effect(time, *_stack(collected.commands[world], joints), joints)
        task = _same_time(time, *_stack(collected.tasks[world], fields), fields)
        arrays[prefix + "task"] = task
        for field, key in (("reward", "rewards"), ("terminated", "terminated"), ("truncated", "truncated")):
            if field in task_fields:
                column = task[:, task_fields.index(field)]
                arrays[prefix + key] = column if key == "rewards" else np.nan_to_num(column) != 0
        if collected.applied:
            rows = []
            for time_ns, names, values in collected.applied:
                row = np.full(len(applied_names), np.nan)
                if world < values.shape[0]:
                    row[[columns[name] for name in names]] = values[world, : len(names)]
                rows.append((time_ns, row))
            arrays[prefix + "applied"] = _in_effect(
                time, *_stack(rows, len(applied_names)), len(applied_names)
            )
    return arrays


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sim_bridge_core.recording.convert",
        description="Convert a rollout bag (rosbag2 directory) to per-world NumPy arrays in an .npz file.",
    )
    parser.add_argument("bag_dir", help="rosbag2 directory with metadata.yaml")
    parser.add_argument("out", help="output .npz file")
    args = parser.parse_args(argv)
    try:
        arrays = bag_to_arrays(args.bag_dir)
        np.savez(args.out, **arrays)
    except (RecordingError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    worlds = arrays["worlds"].tolist()
    states = sum(arrays[f"env_{w}/time"].size for w in worlds)
    print(f"{args.out}: {len(worlds)} worlds {worlds}, {states} states, {len(arrays)} arrays")
    return 0


if __name__ == "__main__":
    sys.exit(main())
