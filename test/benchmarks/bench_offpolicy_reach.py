"""TD3 and SAC beside PPO: fused training of arm7 reach on the cpu backend, one wall budget each.

For each algorithm of ``--algorithms`` (in order, one after another):
  1. raw physics of the same model, N and substeps (``bench_train_reach.raw_physics_rate``),
     measured once per world count before the first training, is the baseline;
  2. fused training (``sim_bridge_core.learning.Runner``) for ``--max-wall-s`` seconds of training;
  3. every ``--eval-every-s`` seconds of training, the deterministic policy is evaluated on a
     separate, separately seeded env (``--eval-episodes-periodic`` episodes, one per world); the
     evaluation's time is taken off the training clock (the runner's start moves by it);
  4. at the end, the final policy is evaluated on ``--eval-episodes`` fresh episodes.

Printed per algorithm: env steps, env-steps/s, gradient steps and gradient steps/s (off-policy:
the learner's counter; PPO: iterations x epochs x minibatches), final eval success, time to 90 %
eval success (the first periodic evaluation at or above 90 %), and the raw physics rate.

Run: python test/benchmarks/bench_offpolicy_reach.py --algorithms td3,sac,ppo [--num-envs N]
     [--ppo-num-envs 2048] [--max-wall-s 600] [--off-policy '{"batch_size": 1024}'] [--seed 0]
     [--plot docs/images/offpolicy_reach.png] [--json out.json]
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

from bench_train_reach import env_factory, raw_physics_rate
from cli import world_parser
from sim_bridge_core.learning import OffPolicyConfig, PpoConfig, Runner, evaluate

# docs/policy.md: fewer worlds than PPO's 2048 (more gradient steps per env step)
DEFAULT_OFF_POLICY_ENVS = 512


def main() -> None:
    parser = world_parser(__doc__, num_envs=DEFAULT_OFF_POLICY_ENVS, episode_length_s=3.0)
    parser.add_argument("--algorithms", default="td3,sac,ppo")
    parser.add_argument("--ppo-num-envs", type=int, default=2048, help="worlds of the PPO run")
    parser.add_argument("--command-interface", choices=("trajectory", "position"), default="trajectory")
    parser.add_argument("--max-wall-s", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--off-policy", default="{}", help="OffPolicyConfig overrides as JSON")
    parser.add_argument("--ppo", default="{}", help="PpoConfig overrides as JSON")
    parser.add_argument("--eval-every-s", type=float, default=30.0, help="seconds of training between evals")
    parser.add_argument("--eval-episodes-periodic", type=int, default=512)
    parser.add_argument("--eval-episodes", type=int, default=2048, help="the final evaluation's episodes")
    parser.add_argument("--raw-seconds", type=float, default=5.0)
    parser.add_argument("--stop-at-90", action="store_true", help="end a run at 90 %% eval (probes)")
    parser.add_argument("--plot", default="", help="PNG of eval success against training wall time")
    parser.add_argument("--json", default="", help="also write the figures here")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args()

    make_env = env_factory(args)

    algorithms = [name.strip() for name in args.algorithms.split(",") if name.strip()]
    periodic_env = make_env(args.eval_episodes_periodic, args.seed + 1000)
    raw: dict[int, float] = {}
    results = [train_one(algorithm, args, make_env, periodic_env, raw) for algorithm in algorithms]

    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=1)
    if args.plot:
        plot(results, args.plot)


def train_one(
    algorithm: str, args: Any, make_env: Callable[[int, int], Any], periodic_env: Any, raw: dict[int, float]
) -> dict[str, Any]:
    """Train ``algorithm`` for the wall budget, evaluating as it goes; its figures (printed)."""
    if algorithm == "ppo":
        num_envs = args.ppo_num_envs
        config: Any = PpoConfig.from_dict({"seed": args.seed, **json.loads(args.ppo)})
    else:
        num_envs = args.num_envs
        config = OffPolicyConfig.from_dict({"seed": args.seed, **json.loads(args.off_policy)})
    env = make_env(num_envs, args.seed)
    if num_envs not in raw:
        robot, substeps = env.backend.robot, env.backend.substeps
        raw[num_envs] = raw_physics_rate(robot, num_envs, substeps, args.raw_seconds)

    curve: list[tuple[float, int, float]] = []  # (training wall s, env steps, eval success)
    next_eval = [args.eval_every_s]
    runner: Runner

    def on_iteration(record: dict[str, float], learner: Any) -> bool:
        if record["wall_s"] < next_eval[0]:
            return False
        start = time.perf_counter()
        success = evaluate(periodic_env, learner.model, args.eval_episodes_periodic)
        learner.model.train()
        curve.append((record["wall_s"], int(record["env_steps"]), success))
        print(
            f"  {algorithm} {record['wall_s']:6.0f} s {int(record['env_steps']):>10d} steps  "
            f"eval {success:6.1%}  train success {record['success_rate']:6.1%}",
            flush=True,
        )
        next_eval[0] = record["wall_s"] + args.eval_every_s
        runner.start += time.perf_counter() - start  # evaluation is off the training clock
        return args.stop_at_90 and success >= 0.9

    runner = Runner(env, config, algorithm=algorithm, on_iteration=on_iteration, progress=args.progress)
    result = runner.run(max_wall_s=args.max_wall_s)
    learner = result.learner
    if algorithm == "ppo":
        gradient_steps = learner.iteration * config.num_epochs * config.num_minibatches
    else:
        gradient_steps = learner.gradient_steps
    final_env = make_env(min(num_envs, args.eval_episodes), args.seed + 2000)
    final = evaluate(final_env, result.model, args.eval_episodes)
    reached = next(((wall, steps) for wall, steps, success in curve if success >= 0.9), None)
    figures = {
        "algorithm": algorithm,
        "num_envs": num_envs,
        "config": config.to_dict(),
        "wall_s": result.run_wall_s,
        "iterations": learner.iteration,
        "env_steps": result.run_env_steps,
        "env_steps_per_s": result.env_steps_per_s,
        "gradient_steps": gradient_steps,
        "gradient_steps_per_s": gradient_steps / result.run_wall_s,
        "final_success": final,
        "time_to_90_s": reached[0] if reached else None,
        "env_steps_to_90": reached[1] if reached else None,
        "raw_env_steps_per_s": raw[num_envs],
        "curve": curve,
    }
    print_figures(figures, args)
    return figures


def print_figures(figures: dict[str, Any], args: Any) -> None:
    n = figures["num_envs"]
    print(
        f"{figures['algorithm']}: {args.model}/{args.task} x {n} worlds, cpu backend, "
        f"{os.cpu_count()} cores, "
        f"control_dt {args.control_dt} s, episode {args.episode_length_s} s"
    )
    print(f"  config: {json.dumps(figures['config'])}")
    print(f"  wall time (training)       {figures['wall_s']:10.1f} s  ({figures['iterations']} iterations)")
    print(f"  env steps                  {figures['env_steps']:10d}")
    print(f"  env-steps/s (training)     {figures['env_steps_per_s']:10.0f}")
    print(f"  gradient steps             {figures['gradient_steps']:10d}")
    print(f"  gradient steps/s           {figures['gradient_steps_per_s']:10.1f}")
    print(f"  raw physics env-steps/s    {figures['raw_env_steps_per_s']:10.0f}  ({n} worlds)")
    print(f"  eval success (final)       {figures['final_success']:10.1%}  ({args.eval_episodes} episodes)")
    if figures["time_to_90_s"] is not None:
        print(
            f"  time to 90 % eval success  {figures['time_to_90_s']:10.1f} s  "
            f"({figures['env_steps_to_90']} env steps)"
        )
    else:
        print("  time to 90 % eval success  not reached")


def plot(results: list[dict[str, Any]], png_path: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4), tight_layout=True)
    FigureCanvasAgg(figure)
    axis = figure.add_subplot()
    for figures in results:
        times = [0.0] + [wall for wall, _, _ in figures["curve"]]
        success = [0.0] + [value for _, _, value in figures["curve"]]
        axis.plot(times, success, marker=".", label=f"{figures['algorithm']} ({figures['num_envs']} worlds)")
    axis.axhline(0.9, color="grey", linestyle="--", linewidth=0.8)
    axis.set_xlabel("training wall time (s)")
    axis.set_ylabel("eval success (deterministic)")
    axis.set_ylim(0.0, 1.0)
    axis.legend()
    os.makedirs(os.path.dirname(png_path) or ".", exist_ok=True)
    figure.savefig(png_path)


if __name__ == "__main__":
    main()
