"""scripts/slurm_submit.py on a hand-written plan: the sbatch lines it would run, sbatch itself never run."""
import importlib.util
import json
import shlex
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "slurm_submit.py"
spec = importlib.util.spec_from_file_location("slurm_submit", SCRIPT)
slurm_submit = importlib.util.module_from_spec(spec)
spec.loader.exec_module(slurm_submit)

CMD = "python -m dmtrack report --profile paper --work '/w/my runs' --step "
PLAN = {"problems": [], "steps": [
    {"step": "00_data", "deps": [], "gpus": 1, "command": CMD + "00_data"},
    {"step": "10_train/full_seed0", "deps": ["00_data"], "gpus": 2, "command": CMD + "10_train/full_seed0"},
    {"step": "10_train/full_seed1", "deps": ["00_data"], "gpus": 2, "command": CMD + "10_train/full_seed1"},
    {"step": "20_evaluate/full_lasot_k1", "deps": ["10_train/full_seed0", "10_train/full_seed1"], "gpus": 1,
     "command": CMD + "20_evaluate/full_lasot_k1"}]}


def test_one_job_per_step_after_its_dependencies():
    calls = []
    ids = slurm_submit.submit(PLAN, ["--partition=gpu"], run=lambda cmd: calls.append(cmd) or str(100 + len(calls)))
    assert ids == {"00_data": "101", "10_train/full_seed0": "102", "10_train/full_seed1": "103",
                   "20_evaluate/full_lasot_k1": "104"}
    assert calls[0] == ["sbatch", "--parsable", "--job-name=dmtrack:00_data", "--gres=gpu:1", "--partition=gpu",
                        "--wrap", CMD + "00_data"]
    assert calls[1][3:5] == ["--gres=gpu:2", "--dependency=afterok:101"]
    assert calls[3][3:5] == ["--gres=gpu:1", "--dependency=afterok:102:103"]
    assert shlex.split(calls[3][-1])[7] == "/w/my runs"  # the step's command goes to --wrap unchanged


def test_dry_run_prints_the_lines_and_a_plan_with_problems_submits_nothing(tmp_path, capsys):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(PLAN))
    assert slurm_submit.main([str(plan), "--dry-run", "--", "--time=1:00:00"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[3] == ("sbatch --parsable --job-name=dmtrack:20_evaluate/full_lasot_k1 --gres=gpu:1 "
                        "--dependency=afterok:JOB2:JOB3 --time=1:00:00 --wrap " + shlex.quote(CMD + "20_evaluate/full_lasot_k1"))
    assert lines[4] == "4 job(s) planned; last: JOB4"
    plan.write_text(json.dumps(dict(PLAN, problems=["pretrained= is not set"])))
    assert slurm_submit.main([str(plan), "--dry-run"]) == 1
    assert capsys.readouterr().err.strip() == ("error: the plan lists problems that would stop the chain: "
                                               "pretrained= is not set")
    with pytest.raises(ValueError, match="has no command"):
        slurm_submit.submit({"steps": [{"step": "a", "deps": [], "gpus": 1}]}, [], run=print)
