"""Submit a `dmtrack report` chain to SLURM: one sbatch job per step, each after the steps it reads from.

    python -m dmtrack report --profile paper --set pretrained=/w/OSTrack_ep0300.pth.tar \
        --set text_encoder=/w/bert-base-uncased --plan --json > plan.json
    python scripts/slurm_submit.py plan.json --dry-run                      # print the sbatch lines only
    python scripts/slurm_submit.py plan.json -- --partition=gpu --time=2-00:00:00

Each job runs the step's command from the plan (`python -m dmtrack report ... --step NAME`, skip-if-done
with the same keys and stamps as the whole chain) with `--gres=gpu:<the GPUs the step takes>` and
`--dependency=afterok:<its dependencies' job ids>`; SLURM does the scheduling. Run it from the repository
with the project's environment active: sbatch passes this shell's environment to the jobs. Arguments
after `--` go to every sbatch call. Nothing here is specific to DMTrack beyond the plan's fields.
"""
from __future__ import annotations

import argparse
import graphlib
import itertools
import json
import shlex
import subprocess
import sys

PLAN_HELP = "make the plan with `python -m dmtrack report ... --plan --json`"


class PlanError(ValueError):
    """The plan cannot be submitted as it is, or a submission failed; the message is the one line printed."""


def sbatch_command(step: dict, dep_ids: list[str], extra: list[str]) -> list[str]:
    """The sbatch call of one plan step (its fields: step, deps, gpus, command)."""
    cmd = ["sbatch", "--parsable", f"--job-name=dmtrack:{step['step']}", f"--gres=gpu:{step['gpus']}"]
    if dep_ids:
        cmd.append("--dependency=afterok:" + ":".join(dep_ids))
    return cmd + list(extra) + ["--wrap", step["command"]]


def sbatch(cmd: list[str]) -> str:
    """Run sbatch --parsable; its output is `<job id>[;<cluster>]`."""
    job = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().split(";")[0]
    if not job.isdigit():  # an empty id would make the next job's --dependency wrong, not fail
        raise PlanError(f"sbatch printed {job!r}, not a job id")
    return job


def scancel(ids: list[str]) -> None:
    subprocess.run(["scancel", *ids], check=True, capture_output=True, text=True)


def check_step(step, names: set) -> None:
    """One plan step's fields: step (a new name), deps (a list of names), gpus (an int >= 0), command (a string)."""
    if not isinstance(step, dict) or not isinstance(step.get("step"), str) or not step["step"]:
        raise PlanError(f"a plan step is not an object with a name in \"step\": {json.dumps(step)[:80]}")
    name = step["step"]
    if "command" not in step:
        raise PlanError(f"plan step {name} has no command: {PLAN_HELP}")
    if name in names:
        raise PlanError(f"plan step {name} is listed twice")
    bad = ("command" if not isinstance(step["command"], str) or not step["command"].strip() else
           "deps" if not isinstance(step.get("deps"), list) or not all(isinstance(d, str) for d in step["deps"]) else
           "gpus" if type(step.get("gpus")) is not int or step["gpus"] < 0 else None)
    if bad:
        want = {"command": "one shell command line (a string)", "deps": "a list of step names", "gpus": "an integer >= 0"}
        raise PlanError(f"plan step {name}: {bad} is {json.dumps(step.get(bad))}, expects {want[bad]}")
    names.add(name)


def check_plan(plan) -> list[dict]:
    """The plan's steps, each checked, every dependency in the plan and no cycle (PlanError otherwise)."""
    if not isinstance(plan, dict) or not isinstance(plan.get("steps"), list) or not plan["steps"]:
        raise PlanError(f"the plan has no steps: {PLAN_HELP}")
    if plan.get("problems"):
        raise PlanError(f"the plan lists problems that would stop the chain: {plan['problems'][0]}")
    names = set()
    for step in plan["steps"]:
        check_step(step, names)
    for step in plan["steps"]:
        missing = [d for d in step["deps"] if d not in names]
        if missing:
            raise PlanError(f"plan step {step['step']} depends on {missing[0]}, which is not in the plan")
    try:
        graphlib.TopologicalSorter({s["step"]: s["deps"] for s in plan["steps"]}).prepare()
    except graphlib.CycleError as e:
        raise PlanError(f"the plan's steps depend on each other in a cycle: {' <- '.join(e.args[1])}") from None
    return plan["steps"]


def cancel_queued(ids: dict[str, str], cancel) -> str:
    """Cancel the jobs already queued (their dependants would wait forever); says which, or how to by hand."""
    if not ids:
        return "no job was queued"
    queued = ", ".join(f"{job} ({name})" for name, job in ids.items())
    try:
        cancel(list(ids.values()))
    except (subprocess.CalledProcessError, OSError) as e:
        why = " ".join(str(getattr(e, "stderr", None) or e).split())
        return f"could not cancel the {len(ids)} job(s) already queued ({why}); cancel them by hand: scancel {' '.join(ids.values())}"
    return f"cancelled the {len(ids)} job(s) already queued: {queued}"


def submit(plan: dict, extra: list[str], run=sbatch, cancel=scancel) -> dict[str, str]:
    """Submit every step, each after those it reads from (in plan order where it allows); returns {step: job id}.
    A failed sbatch cancels the jobs already queued and raises PlanError naming them."""
    steps = {s["step"]: s for s in check_plan(plan)}
    ids: dict[str, str] = {}

    def one(name: str) -> None:
        if name not in ids:
            for dep in steps[name]["deps"]:
                one(dep)
            try:
                ids[name] = run(sbatch_command(steps[name], [ids[d] for d in steps[name]["deps"]], extra))
            except (subprocess.CalledProcessError, OSError, PlanError) as e:
                why = " ".join(str(getattr(e, "stderr", None) or e).split())
                raise PlanError(f"sbatch failed for step {name}: {why}; {cancel_queued(ids, cancel)}") from None

    for name in steps:
        one(name)
    return ids


def read_plan(path: str):
    """The plan's JSON, from a file or stdin (-); PlanError naming the file if it is missing or not JSON."""
    try:
        with (open(0, closefd=False) if path == "-" else open(path)) as f:
            return json.load(f)
    except OSError as e:
        raise PlanError(f"{path}: {e.strerror or e}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PlanError(f"{path}: not a JSON plan ({e}): {PLAN_HELP}") from None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="slurm_submit.py", description=__doc__.splitlines()[0])
    p.add_argument("plan", help="the output of `dmtrack report ... --plan --json` (- for stdin)")
    p.add_argument("--dry-run", action="store_true", help="print the sbatch commands with placeholder job ids; submit nothing")
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)  # after --: options for every sbatch call
    args, extra = p.parse_args(argv[:cut]), argv[cut + 1:]
    run, numbers = sbatch, itertools.count(1)
    if args.dry_run:
        def run(cmd):
            print(shlex.join(cmd))
            return f"JOB{next(numbers)}"  # placeholder job ids, in submission order
    try:
        ids = submit(read_plan(args.plan), extra, run)
    except PlanError as e:
        print(f"{p.prog}: error: {e}", file=sys.stderr)
        return 1
    print(f"{len(ids)} job(s) {'planned' if args.dry_run else 'submitted'}; last: {list(ids.values())[-1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
