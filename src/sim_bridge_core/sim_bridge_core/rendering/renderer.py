"""Offscreen pictures of one world's state.

The GL backend is MuJoCo's choice (``MUJOCO_GL``: egl, osmesa or glfw), made when mujoco is first
imported; with no display and no choice made, ``sim_bridge_core`` picks EGL, which works headless
(on Mesa's software renderer without a GPU).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import mujoco
import numpy as np

from sim_bridge_core.config import ConfigError

_NO_GL = "cameras: no OpenGL for offscreen rendering: set MUJOCO_GL=egl (or osmesa) with a working driver"


def require_gl() -> None:
    """Check that an offscreen GL context can be made; ConfigError with one line when it cannot,
    before any camera is promised."""
    model = mujoco.MjModel.from_xml_string("<mujoco/>")
    try:
        mujoco.Renderer(model, 8, 8).close()
    except Exception as exc:  # the GL modules raise RuntimeError, ImportError, FatalError, ...
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"{_NO_GL} (MUJOCO_GL={os.environ.get('MUJOCO_GL', '')}: {detail})") from exc


class WorldRenderer:
    """Renders a world of ``model`` from its joint positions, in its own MjData (the simulation's
    data is never touched, so a picture can be taken from a copy made under the simulation lock).
    One GL context per renderer: use it from one thread. The jobs that render call
    ``require_gl`` first, to refuse at start in one line."""

    def __init__(self, model: mujoco.MjModel, width: int, height: int) -> None:
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, height)
        self.model, self.width, self.height = model, width, height
        self._data = mujoco.MjData(model)
        self._renderer = mujoco.Renderer(model, height, width)

    def render(
        self,
        qpos: np.ndarray,
        camera: int | str | mujoco.MjvCamera,
        depth: bool = False,
        decorate: Callable[[mujoco.MjvScene], None] | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(rgb uint8 HxWx3, depth float32 HxW in metres along the optical axis, or None) of the
        world at ``qpos`` seen from ``camera`` (id, name or a free MjvCamera); ``decorate`` adds
        geoms to the scene before it is drawn (a goal, a command arrow)."""
        self._data.qpos[:] = qpos
        mujoco.mj_forward(self.model, self._data)
        self._renderer.update_scene(self._data, camera=camera)
        if decorate is not None:
            decorate(self._renderer.scene)
        rgb = self._renderer.render()
        if not depth:
            return rgb, None
        self._renderer.enable_depth_rendering()
        try:
            distance = self._renderer.render().astype(np.float32, copy=False)
        finally:
            self._renderer.disable_depth_rendering()
        return rgb, distance

    def close(self) -> None:
        """Free the GL context (also done when the renderer is collected)."""
        self._renderer.close()
