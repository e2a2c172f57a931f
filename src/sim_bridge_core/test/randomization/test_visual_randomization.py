"""Visual domain randomization: what each world's camera pictures show, never its physics."""

from __future__ import annotations

import copy
from pathlib import Path

# isort: off
import sim_bridge_core  # noqa: F401  (before mujoco: it picks the headless GL backend)

# isort: on
import numpy as np
import pytest
import yaml
from sim_bridge_core.config import ConfigError
from sim_bridge_core.models import load_robot
from sim_bridge_core.randomization import Randomizer, load_spec, spec_from_mapping
from sim_bridge_core.rendering import WorldRenderer
from sim_bridge_core.sim.backends.cpu import CpuBackend
from sim_bridge_core.simulator.core import Simulator, SimulatorConfig

SCENE = str(Path(__file__).resolve().parents[1] / "models" / "textured_scene.xml")
SPECS = Path(__file__).resolve().parents[4] / "config" / "randomization"
ROBOT = load_robot(SCENE)
DT = 0.02
VISUAL = {
    "light_direction": {"operation": "add", "low": -0.3, "high": 0.3},
    "light_diffuse": {"operation": "scale", "low": 0.5, "high": 1.5},
    "geom_rgba": {"targets": "link", "operation": "abs", "low": 0.0, "high": 1.0},
    "material_rgba": {"operation": "scale", "low": 0.3, "high": 1.0},
    "material_texture": {"low": 0, "high": 1},
    "camera_position": {"low": -0.05, "high": 0.05},
    "camera_rotation": {"low": -0.05, "high": 0.05},
    "camera_fovy": {"operation": "add", "low": -5.0, "high": 5.0},
}


def visual_randomizer(spec: dict, num_envs: int = 2, seed: int = 0) -> Randomizer:
    backend = CpuBackend(ROBOT, num_envs, DT, threads=1)
    return Randomizer(spec_from_mapping(spec), backend, seed=seed, visual=True)


def pictures(randomizer: Randomizer) -> tuple[np.ndarray, list[np.ndarray]]:
    """The nominal picture and each world's, from one render model the worlds' values are written into."""
    renderer = WorldRenderer(copy.copy(ROBOT.model), 64, 48)
    qpos = np.zeros(ROBOT.model.nq)
    nominal, _ = renderer.render(qpos, "overhead")
    state = randomizer.visual_state(np.arange(randomizer.num_envs))
    worlds = []
    for world in range(randomizer.num_envs):
        state.apply(renderer.model, world)
        worlds.append(renderer.render(qpos, "overhead")[0])
    renderer.close()
    return nominal, worlds


def halfway_settings() -> dict:
    """A curriculum at half of every range."""
    return {"curriculum": {"start_fraction": 0.5, "steps": 100}}


def differing_pixels(a: np.ndarray, b: np.ndarray) -> int:
    return int((np.abs(a.astype(int) - b.astype(int)).sum(axis=2) > 10).sum())


def test_each_world_is_pictured_with_its_own_draws() -> None:
    nominal, (first, second) = pictures(visual_randomizer(VISUAL))
    assert differing_pixels(first, nominal) > 200
    assert differing_pixels(second, nominal) > 200
    assert differing_pixels(first, second) > 200
    # every world's values overwrite the previous world's: the first world renders as before
    randomizer = visual_randomizer(VISUAL)
    renderer = WorldRenderer(copy.copy(ROBOT.model), 64, 48)
    state = randomizer.visual_state(np.arange(2))
    state.apply(renderer.model, 1)
    state.apply(renderer.model, 0)
    assert np.array_equal(renderer.render(np.zeros(1), "overhead")[0], first)


@pytest.mark.parametrize(
    ("name", "entry"),
    [
        ("light_diffuse", {"operation": "abs", "low": 0.1, "high": 0.1}),
        ("geom_rgba", {"targets": "link", "operation": "abs", "low": 0.0, "high": 0.0}),
        ("material_texture", {"low": 1, "high": 1}),
        ("camera_fovy", {"operation": "abs", "low": 100.0, "high": 100.0}),
        ("camera_rotation", {"axes": "x", "low": 0.3, "high": 0.3}),
    ],
)
def test_each_visual_kind_changes_the_picture(name: str, entry: dict) -> None:
    nominal, (world,) = pictures(visual_randomizer({name: entry}, num_envs=1))
    assert differing_pixels(world, nominal) > 20


def test_visual_values_are_reported_and_follow_the_curriculum() -> None:
    randomizer = visual_randomizer(
        {"geom_rgba": {"targets": "link", "operation": "abs", "low": 0.2, "high": 0.2}}
    )
    values, names = randomizer.applied()
    assert names == ("geom_rgba_r/link", "geom_rgba_g/link", "geom_rgba_b/link")
    assert np.allclose(values, 0.2)
    randomizer.set_enabled(False)
    assert np.allclose(randomizer.applied()[0], [0.9, 0.2, 0.2])  # the model's own colour
    assert np.allclose(randomizer.visual_state(np.arange(2)).values[0], [0.9, 0.2, 0.2])
    halfway = spec_from_mapping(
        {**halfway_settings(), "camera_fovy": {"operation": "abs", "low": 80.0, "high": 80.0}}
    )
    grown = Randomizer(halfway, CpuBackend(ROBOT, 1, DT, threads=1), visual=True)
    assert grown.applied() == (pytest.approx(np.array([[70.0]])), ("camera_fovy/overhead",))
    # a texture is a choice: never an id part way between the nominal and the drawn one
    textures = Randomizer(
        spec_from_mapping({**halfway_settings(), "material_texture": {"low": 1, "high": 1}}),
        CpuBackend(ROBOT, 1, DT, threads=1),
        visual=True,
    )
    assert textures.applied()[0].tolist() == [[1.0]]


def test_visual_kinds_leave_the_physics_and_the_physical_draws_alone() -> None:
    mass = {"body_mass": {"operation": "scale", "low": 0.5, "high": 2.0}}

    def run(spec: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        randomizer = visual_randomizer(spec, num_envs=3, seed=7)
        backend = randomizer.backend
        for step in range(30):
            backend.step(np.full((3, 1), 0.5 * np.sin(step / 5)))
        return (
            backend.joint_positions(),
            randomizer.applied()[0][:, :1],
            backend.model_field("geom_rgba").copy(),
        )

    plain_q, plain_mass, plain_rgba = run(mass)
    visual_q, visual_mass, visual_rgba = run({**mass, **VISUAL})
    assert np.array_equal(plain_q, visual_q)
    assert np.array_equal(plain_mass, visual_mass)
    assert np.array_equal(plain_rgba, visual_rgba)


def test_without_cameras_visual_kinds_are_checked_but_not_drawn() -> None:
    spec = spec_from_mapping(VISUAL)
    randomizer = Randomizer(spec, CpuBackend(ROBOT, 2, DT, threads=1))
    assert randomizer.names == () and randomizer.visual_state(np.arange(2)) is None
    bad = spec_from_mapping({"geom_rgba": {"targets": "nope", "low": 0.5, "high": 1.0}})
    with pytest.raises(ConfigError, match=r"^randomization\.geom_rgba\.targets: .* no geom named 'nope'"):
        Randomizer(bad, CpuBackend(ROBOT, 2, DT, threads=1))


def test_the_simulator_draws_visual_kinds_only_with_cameras() -> None:
    text = yaml.safe_dump({"randomization": VISUAL})
    with_cameras = Simulator(
        SimulatorConfig(
            model=SCENE, num_envs=2, randomization=text, cameras="[{name: overhead, width: 64, height: 48}]"
        )
    )
    assert "camera_fovy/overhead" in with_cameras.env.randomizer.names
    assert Simulator(SimulatorConfig(model=SCENE, num_envs=2, randomization=text)).env.randomizer.names == ()


def test_the_default_preset_binds_on_a_model_without_materials_or_textures() -> None:
    spec = load_spec(SPECS / "default.yaml")
    randomizer = Randomizer(spec, CpuBackend(load_robot("arm7"), 2, DT, threads=1), visual=True)
    names = randomizer.names
    assert any(n.startswith("light_diffuse_r/") for n in names)
    assert not any(n.startswith(("material_", "camera_")) for n in names)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"geom_rgba": {"targets": "nope", "low": 0, "high": 1}},
            r"geom_rgba\.targets: .* no geom named 'nope'",
        ),
        ({"light_diffuse": {"colour": 1, "low": 0, "high": 1}}, r"light_diffuse\.colour: unknown"),
        ({"camera_fovy": {"axes": "x", "low": 0, "high": 1}}, r"camera_fovy\.axes: .* not a vector"),
        ({"camera_fovy": {"operation": "abs", "low": 0, "high": 1}}, r"camera_fovy\.low: fovy must stay > 0"),
        ({"material_texture": {"low": 0, "high": 2}}, r"material_texture\.high: texture id 2 is not"),
        ({"material_texture": {"operation": "add", "low": 0, "high": 1}}, r"material_texture\.operation:"),
        ({"light_colour": {"low": 0, "high": 1}}, r"randomization\.light_colour: unknown parameter"),
    ],
)
def test_a_bad_visual_key_fails_in_one_line_naming_it(entry: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        visual_randomizer(entry)
    assert "\n" not in str(error.value)


def test_an_evaluation_video_shows_the_worlds_visual_draws(tmp_path):
    """A randomized episode's video is filmed as its camera would see it: with the world's lights,
    colours and camera; nominal physics, nominal picture (and the robot's model stays nominal)."""
    from sim_bridge_core.envs.batched import BatchedEnv
    from sim_bridge_core.jobs.videos import EpisodeVideo
    from sim_bridge_core.learning.modules import ActorCritic
    from sim_bridge_core.rendering import sample_mp4_frames
    from sim_bridge_core.tasks import make_task

    backend = CpuBackend(ROBOT, 1, DT, threads=1)
    randomizer = Randomizer(spec_from_mapping(VISUAL), backend, seed=3, visual=True)
    env = BatchedEnv(backend, make_task("none", ROBOT), 1.0, randomizer=randomizer)
    video = EpisodeVideo(env, camera="overhead", width=64, height=48)
    randomized, nominal = tmp_path / "randomized.mp4", tmp_path / "nominal.mp4"
    policy = ActorCritic(env.task.observation_size, ROBOT.num_joints, [], [8], 0.0)
    video.record(policy, randomized)
    env.set_randomization_enabled(False)
    video.record(policy, nominal)
    video.close()
    assert not np.array_equal(sample_mp4_frames(randomized, 1), sample_mp4_frames(nominal, 1))
    np.testing.assert_array_equal(ROBOT.model.geom_rgba, load_robot(SCENE).model.geom_rgba)
