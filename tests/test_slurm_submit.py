"""scripts/slurm_submit.py on hand-written plans: the sbatch lines it would run (sbatch itself is never run; a
fake sbatch / scancel on PATH stands in for SLURM), and one line naming what is wrong with a bad plan."""
import importlib.util
import json
import os
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
    assert capsys.readouterr().err.strip() == ("slurm_submit.py: error: the plan lists problems that would stop the chain: "
                                               "pretrained= is not set")
    with pytest.raises(ValueError, match="has no command"):
        slurm_submit.submit({"steps": [{"step": "a", "deps": [], "gpus": 1}]}, [], run=print)


NO_STEPS = "the plan has no steps: make the plan with `python -m dmtrack report ... --plan --json`"


def step(name, deps=(), command=None):
    return {"step": name, "deps": list(deps), "gpus": 1, "command": command or CMD + name}


@pytest.mark.parametrize("text, message", [
    (None, "{plan}: No such file or directory"),
    ("{", "{plan}: not a JSON plan (Expecting property name enclosed in double quotes: line 1 column 2 (char 1)): "
          "make the plan with `python -m dmtrack report ... --plan --json`"),
    ("{}", NO_STEPS), ("[]", NO_STEPS), ('{"steps": []}', NO_STEPS),
    (json.dumps({"steps": [step("a", ["b"]), step("b", ["a"])]}),
     "the plan's steps depend on each other in a cycle: a <- b <- a"),
    (json.dumps({"steps": [step("a"), step("b", ["a", "x"])]}), "plan step b depends on x, which is not in the plan"),
    (json.dumps({"steps": [step("a", command=["python", "-m"])]}),
     'plan step a: command is ["python", "-m"], expects one shell command line (a string)'),
    (json.dumps({"steps": [step("a"), step("a")]}), "plan step a is listed twice"),  # was: two jobs, "1 job(s)"
    (json.dumps({"steps": [dict(step("a"), gpus="1")]}), 'plan step a: gpus is "1", expects an integer >= 0'),
    (json.dumps({"steps": ["a"]}), 'a plan step is not an object with a name in "step": "a"'),
])
def test_a_bad_plan_is_one_line_and_submits_nothing(tmp_path, capsys, text, message):
    plan = tmp_path / "plan.json"
    if text is not None:
        plan.write_text(text)
    assert slurm_submit.main([str(plan), "--dry-run"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err == f"slurm_submit.py: error: {message.format(plan=plan)}\n"


def test_dependencies_are_submitted_first_whatever_the_plan_order():
    calls = []
    ids = slurm_submit.submit({"steps": [step("b", ["a"]), step("c"), step("a")]}, [],
                              run=lambda cmd: calls.append(cmd) or str(len(calls)))
    assert ids == {"a": "1", "b": "2", "c": "3"}
    assert [c[2] for c in calls] == ["--job-name=dmtrack:a", "--job-name=dmtrack:b", "--job-name=dmtrack:c"]
    assert calls[1][4] == "--dependency=afterok:1"


FAKE_SBATCH = """#!/bin/sh
n=$(($(cat "$LOG/n" 2>/dev/null || echo 100) + 1)); echo $n > "$LOG/n"; echo "$@" >> "$LOG/sbatch"
if [ "$n" = "$FAIL_AT" ]; then echo "sbatch: error: Batch job submission failed:" >&2; echo "QOS limit" >&2; exit 1; fi
echo "$n;cluster"
"""


def fake_slurm(tmp_path, monkeypatch, fail_at="", scancel="echo \"$@\" >> \"$LOG/scancel\""):
    """sbatch and scancel on PATH: sbatch prints ids 101, 102, ... (failing on id FAIL_AT); both log their arguments."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("scancel", f"#!/bin/sh\n{scancel}\n")):
        (bin_ / name).write_text(text)
        (bin_ / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("LOG", str(tmp_path))
    monkeypatch.setenv("FAIL_AT", fail_at)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(PLAN))
    return str(plan)


def test_fake_sbatch_queues_each_step_after_its_dependencies(tmp_path, monkeypatch, capsys):
    assert slurm_submit.main([fake_slurm(tmp_path, monkeypatch), "--", "--partition=gpu"]) == 0
    assert capsys.readouterr().out == "4 job(s) submitted; last: 104\n"
    lines = (tmp_path / "sbatch").read_text().splitlines()
    assert len(lines) == 4 and lines[3].startswith("--parsable --job-name=dmtrack:20_evaluate/full_lasot_k1 "
                                                   "--gres=gpu:1 --dependency=afterok:102:103 --partition=gpu --wrap ")
    assert not (tmp_path / "scancel").exists()


def test_a_part_way_sbatch_failure_cancels_and_names_the_queued_jobs(tmp_path, monkeypatch, capsys):
    assert slurm_submit.main([fake_slurm(tmp_path, monkeypatch, fail_at="103")]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err == ("slurm_submit.py: error: sbatch failed for step 10_train/full_seed1: sbatch: error: Batch "
                                 "job submission failed: QOS limit; cancelled the 2 job(s) already queued: 101 (00_data), "
                                 "102 (10_train/full_seed0)\n")
    assert (tmp_path / "scancel").read_text() == "101 102\n"
    assert len((tmp_path / "sbatch").read_text().splitlines()) == 3  # nothing submitted after the failure


def test_when_scancel_fails_too_the_line_says_how_to_cancel_by_hand(tmp_path, monkeypatch, capsys):
    plan = fake_slurm(tmp_path, monkeypatch, fail_at="102", scancel="echo 'scancel: error: no access' >&2; exit 1")
    assert slurm_submit.main([plan]) == 1
    assert capsys.readouterr().err == ("slurm_submit.py: error: sbatch failed for step 10_train/full_seed0: sbatch: error: "
                                       "Batch job submission failed: QOS limit; could not cancel the 1 job(s) already "
                                       "queued (scancel: error: no access); cancel them by hand: scancel 101\n")


def test_fake_sbatch_submits_a_plan_made_with_non_default_options(tmp_path, monkeypatch, capsys):
    """A plan of `dmtrack report --plan --json` with --readings final, --steps-sweep and --robust-variants: one job
    per step, and each job's command carries those options (the job re-plans the same chain)."""
    from dmtrack.cli import main

    monkeypatch.chdir(tmp_path)
    options = ["--readings", "final", "--steps-sweep", "3", "--robust-variants", "no_language"]
    assert main(["report", "--profile", "smoke", "--reports", "r", "--work", "w", "--data-root", "d", *options,
                 "--plan", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    path = fake_slurm(tmp_path, monkeypatch)
    Path(path).write_text(json.dumps(plan))
    assert slurm_submit.main([path]) == 0
    n = len(plan["steps"])
    assert capsys.readouterr().out == f"{n} job(s) submitted; last: {100 + n}\n"
    # the fake sbatch logs its arguments joined by spaces: the --wrap command is the rest of the line
    jobs = {line.split()[1].removeprefix("--job-name=dmtrack:"): line.split(" --wrap ", 1)
            for line in (tmp_path / "sbatch").read_text().splitlines()}
    assert set(jobs) == {s["step"] for s in plan["steps"]}
    sbatch_args, wrapped = jobs["40_report"]
    assert wrapped == next(s["command"] for s in plan["steps"] if s["step"] == "40_report")
    command = shlex.split(wrapped)
    assert command[command.index("--readings") + 1] == "final" and command[command.index("--steps-sweep") + 1] == "3"
    assert command[command.index("--robust-variants") + 1] == "no_language" and command[-2:] == ["--step", "40_report"]
    assert sbatch_args.split()[3].removeprefix("--dependency=afterok:").count(":") == n - 2  # after every other job
