"""The GPU benchmark (test/benchmarks/bench_gpu.py) in its smoke configuration on Warp's CPU device: it
finishes and writes the JSON and the markdown table with every stage, measured or with its reason.

Go1 needs MuJoCo Menagerie: it is trained where SIM_BRIDGE_MODEL_PATH has it; elsewhere the run is
pointed at an empty folder (nothing is downloaded) and Go1's rows must say why they were skipped.
"""

from __future__ import annotations

import datetime
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.warp

BENCH = Path(__file__).resolve().parent / "benchmarks" / "bench_gpu.py"
SMOKE = ("--device", "cpu", "--worlds", "4", "--train-worlds", "8", "--train-s", "10", "--quick")
STAGES = [
    ("raw", "arm7", 4),
    ("backend", "arm7", 4),
    ("env", "arm7", 4),
    ("env_host", "arm7", 4),
    ("raw", "arm7", 8),
    ("ppo", "arm7", 8),
    ("raw", "go1", 8),
    ("ppo", "go1", 8),
]


def check_figures(row: dict) -> None:
    """A measured row: positive rates, an env step of 5 or 10 physics steps, fractions that are fractions."""
    assert row["env_steps_per_s"] > 0, row
    substeps = row["physics_steps_per_s"] / row["env_steps_per_s"]
    assert round(substeps) in (5, 10) and abs(substeps - round(substeps)) < 1e-6, row  # go1 4 ms, arm7 2 ms
    if row["stage"] != "raw":
        assert row["vs_raw"] > 0, row
    if row["stage"] == "ppo":
        assert 0.0 <= row["eval_success_final"] <= 1.0
        assert row["time_to_success_s"] is None or 0 < row["time_to_success_s"] <= row["train_wall_s"]
        assert row["train_env_steps"] >= 8 * 24  # at least one PPO rollout of every world


def bench(tmp_path: Path, *arguments: str) -> tuple[subprocess.CompletedProcess, Path, Path]:
    """bench_gpu.py run with ``arguments``, to bench.json and bench.md in ``tmp_path``; it must succeed."""
    env = dict(os.environ)
    env.setdefault("SIM_BRIDGE_MODEL_PATH", str(tmp_path / "no-menagerie"))
    json_path, markdown_path = tmp_path / "bench.json", tmp_path / "bench.md"
    run = subprocess.run(
        [sys.executable, str(BENCH), *arguments, "--json", str(json_path), "--markdown", str(markdown_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run, json_path, markdown_path


def test_the_smoke_run_reports_every_stage_in_json_and_markdown(tmp_path):
    run, json_path, markdown_path = bench(tmp_path, *SMOKE)
    assert f"[bench_gpu] wrote {json_path} and {markdown_path}" in run.stdout

    report = json.loads(json_path.read_text())
    assert report["device"] == {"name": f"CPU ({os.cpu_count()} cores)", "warp": "cpu", "torch": "cpu"}
    outputs = ("--json", str(json_path), "--markdown", str(markdown_path))
    assert report["command"] == shlex.join(["python", str(BENCH), *SMOKE, *outputs])
    assert datetime.datetime.fromisoformat(report["date"]).tzinfo is not None
    assert set(report["versions"]) == {"mujoco", "mujoco-warp", "warp-lang", "torch"}
    rows = report["stages"]
    assert [(row["stage"], row["robot"], row["worlds"]) for row in rows] == STAGES
    for row in rows:
        if row["robot"] == "arm7" or row["status"] == "ok":
            assert row["status"] == "ok", row
            check_figures(row)
        else:  # Go1 without Menagerie
            assert row["status"] == "skipped" and "unitree_go1/scene.xml" in row["reason"], row

    markdown = markdown_path.read_text()
    assert markdown.startswith("# GPU benchmark\n")
    assert f"- command: `{report['command']}`" in markdown
    table = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| stage | robot / task | worlds | env-steps/s |")
    assert len(table) == 1 + len(STAGES)
    for line, row in zip(table[1:], rows, strict=True):
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert cells[0] == row["stage"] and cells[2] == str(row["worlds"]), line
        if row["status"] == "ok":
            assert cells[3] == f"{row['env_steps_per_s']:,.0f}", line
        else:
            assert cells[3] == "-" and cells[-1] == f"skipped: {row['reason']}", line


def test_a_stage_that_fails_is_a_row_with_its_reason_and_the_next_stages_run(tmp_path):
    """0 worlds, which the training config refuses, stand in for a stage that fails on a GPU (out of
    memory at 32k worlds): its rows carry the reason, and the 4-world stages after them still run."""
    stepping = "--device cpu --stages stepping --worlds 0 4 --quick --measure-s 0.2"
    _, json_path, markdown_path = bench(tmp_path, *stepping.split())
    rows = json.loads(json_path.read_text())["stages"]
    assert [(row["stage"], row["worlds"], row["status"]) for row in rows] == [
        ("raw", 0, "failed"),
        ("backend", 0, "failed"),
        ("env", 0, "failed"),
        ("env_host", 0, "failed"),
        ("raw", 4, "ok"),
        ("backend", 4, "ok"),
        ("env", 4, "ok"),
        ("env_host", 4, "ok"),
    ]
    reason = "ConfigError: arguments.num_envs: must be >= 1, got 0"
    assert all(row["reason"] == reason for row in rows[:4])
    assert markdown_path.read_text().count(f"| failed: {reason} |") == 4
    for row in rows[4:]:
        check_figures(row)
