"""Camera sensors: a robot config's ``cameras:`` entries, the model's own ``<camera>`` elements
described the same way, and the intrinsics a ROS ``camera_info`` carries.

An entry with a ``body`` adds a camera to that body (``pos``/``quat`` in the body's frame, looking
along its -z axis with +y up, as MuJoCo's cameras do); an entry without one names a camera the
model has, and sets only how it is published (size, depth, rate, and ``fovy`` if given). Only
listed cameras are published: a model's own cameras cost nothing until a config asks for them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np

from sim_bridge_core.config import ConfigError

_KEYS = ("name", "body", "pos", "quat", "fovy", "width", "height", "depth", "rate_hz")
MAX_SIZE = 4096  # pixels per side; larger offscreen buffers fail in the GL driver, not here


@dataclass(frozen=True)
class CameraSpec:
    """One published camera: where it is (``body`` '' = the model's own camera of that name), its
    vertical field of view in degrees (None = the model's), image size, depth on/off and rate."""

    name: str
    body: str = ""
    pos: tuple[float, float, float] = (0.0, 0.0, 0.0)
    quat: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)
    fovy: float | None = None
    width: int = 320
    height: int = 240
    depth: bool = False
    rate_hz: float = 10.0


def parse_cameras(entries: Any, where: str = "cameras") -> tuple[CameraSpec, ...]:
    """The ``cameras:`` list of a robot config; ConfigError naming ``cameras[i].<key>``."""
    if entries is None:
        return ()
    if not isinstance(entries, (list, tuple)):
        raise ConfigError(f"{where}: must be a list of cameras, got {entries!r}")
    cameras = tuple(_parse_camera(entry, f"{where}[{i}]") for i, entry in enumerate(entries))
    names = [camera.name for camera in cameras]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ConfigError(f"{where}[{i}].name: camera '{name}' is listed twice")
    return cameras


def _parse_camera(entry: Any, where: str) -> CameraSpec:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: must be a mapping with name (and body, pos, ...), got {entry!r}")
    unknown = sorted(set(entry) - set(_KEYS), key=str)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key (keys: {', '.join(_KEYS)})")
    name, body = entry.get("name"), entry.get("body", "")
    if not isinstance(name, str) or not name or "/" in name or " " in name:
        raise ConfigError(f"{where}.name: a camera name without '/' or spaces, got {name!r}")
    if not isinstance(body, str):
        raise ConfigError(f"{where}.body: a body name, got {body!r}")
    if not body and ("pos" in entry or "quat" in entry):
        raise ConfigError(f"{where}.body: pos and quat place a camera on a body: give its body")
    fovy = entry.get("fovy")
    if fovy is not None:
        fovy = _number(fovy, f"{where}.fovy")
        if not 0.0 < fovy < 180.0:
            raise ConfigError(f"{where}.fovy: degrees in (0, 180), got {fovy}")
    elif body:
        fovy = 45.0  # MuJoCo's default
    rate = _number(entry.get("rate_hz", 10.0), f"{where}.rate_hz")
    if not 0.0 < rate <= 1000.0:
        raise ConfigError(f"{where}.rate_hz: in (0, 1000], got {rate}")
    depth = entry.get("depth", False)
    if not isinstance(depth, bool):
        raise ConfigError(f"{where}.depth: true or false, got {depth!r}")
    return CameraSpec(
        name=name,
        body=body,
        pos=_vector(entry.get("pos", (0.0, 0.0, 0.0)), 3, f"{where}.pos"),
        quat=_quaternion(entry.get("quat", (1.0, 0.0, 0.0, 0.0)), f"{where}.quat"),
        fovy=fovy,
        width=_size(entry.get("width", 320), f"{where}.width"),
        height=_size(entry.get("height", 240), f"{where}.height"),
        depth=depth,
        rate_hz=rate,
    )


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{key}: must be a finite number, got {value!r}")
    return float(value)


def _size(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SIZE:
        raise ConfigError(f"{key}: pixels, an integer in [1, {MAX_SIZE}], got {value!r}")
    return value


def _vector(value: Any, size: int, key: str) -> tuple[float, ...]:
    if not isinstance(value, (list, tuple)) or len(value) != size:
        raise ConfigError(f"{key}: must be {size} numbers, got {value!r}")
    return tuple(_number(v, key) for v in value)


def _quaternion(value: Any, key: str) -> tuple[float, float, float, float]:
    quat = np.asarray(_vector(value, 4, f"{key} [w, x, y, z]"))
    norm = float(np.linalg.norm(quat))
    if norm < 1e-9:
        raise ConfigError(f"{key}: a zero quaternion has no orientation")
    return tuple(float(v) for v in quat / norm)


def add_cameras(spec: mujoco.MjSpec, compiled: mujoco.MjModel, cameras: Sequence[CameraSpec]) -> bool:
    """Add the cameras with a body to ``spec``, set the fovy of listed model cameras, and make the
    offscreen buffer hold the largest image; ConfigError naming ``cameras[i].<key>`` for a camera
    the model lacks, a body it lacks or a name it has already. True when the spec changed."""
    for i, camera in enumerate(cameras):
        where = f"cameras[{i}]"
        exists = mujoco.mj_name2id(compiled, mujoco.mjtObj.mjOBJ_CAMERA, camera.name) >= 0
        if not camera.body:
            if not exists:
                own = [c.name for c in model_cameras(compiled)]
                raise ConfigError(
                    f"{where}.name: the model has no camera '{camera.name}' (its cameras: "
                    f"{', '.join(own) or 'none'}); give a body to add one"
                )
            if camera.fovy is not None:
                spec.camera(camera.name).fovy = camera.fovy
            continue
        if exists:
            raise ConfigError(f"{where}.name: the model has a camera '{camera.name}' already")
        if mujoco.mj_name2id(compiled, mujoco.mjtObj.mjOBJ_BODY, camera.body) < 0:
            raise ConfigError(f"{where}.body: the model has no body '{camera.body}'")
        spec.body(camera.body).add_camera(
            name=camera.name, pos=list(camera.pos), quat=list(camera.quat), fovy=camera.fovy
        )
    if cameras:
        spec.visual.global_.offwidth = max(spec.visual.global_.offwidth, *(c.width for c in cameras))
        spec.visual.global_.offheight = max(spec.visual.global_.offheight, *(c.height for c in cameras))
    return bool(cameras)


def model_cameras(model: mujoco.MjModel) -> tuple[CameraSpec, ...]:
    """The model's own ``<camera>`` elements as camera entries (default size, depth and rate)."""
    cameras = []
    for cam in range(model.ncam):
        body = int(model.cam_bodyid[cam])
        cameras.append(
            CameraSpec(
                name=mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_CAMERA, cam) or f"camera{cam}",
                body=mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, body) or "world",
                pos=tuple(float(v) for v in model.cam_pos[cam]),
                quat=tuple(float(v) for v in model.cam_quat[cam]),
                fovy=float(model.cam_fovy[cam]),
            )
        )
    return tuple(cameras)


def camera_info(fovy_deg: float, width: int, height: int) -> dict[str, list[float]]:
    """Pinhole intrinsics of a MuJoCo camera as ROS ``camera_info`` carries them: K (3x3), P (3x4)
    and R (3x3) row-major, no distortion. MuJoCo's fovy is vertical and its pixels square, so
    fx = fy = (height / 2) / tan(fovy / 2), with the principal point at the image centre."""
    focal = (height / 2.0) / math.tan(math.radians(fovy_deg) / 2.0)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    return {
        "k": [focal, 0.0, cx, 0.0, focal, cy, 0.0, 0.0, 1.0],
        "p": [focal, 0.0, cx, 0.0, 0.0, focal, cy, 0.0, 0.0, 0.0, 1.0, 0.0],
        "r": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        "d": [0.0] * 5,  # plumb_bob, all zero
    }
