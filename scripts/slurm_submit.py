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
import json
import shlex
import subprocess
import sys


def sbatch_command(step: dict, dep_ids: list[str], extra: list[str]) -> list[str]:
    """The sbatch call of one plan step (its fields: step, deps, gpus, command)."""
    cmd = ["sbatch", "--parsable", f"--job-name=dmtrack:{step['step']}", f"--gres=gpu:{step['gpus']}"]
    if dep_ids:
        cmd.append("--dependency=afterok:" + ":".join(dep_ids))
    return cmd + list(extra) + ["--wrap", step["command"]]


def sbatch(cmd: list[str]) -> str:
    """Run sbatch --parsable; its output is `<job id>[;<cluster>]`."""
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().split(";")[0]


def submit(plan: dict, extra: list[str], run=sbatch) -> dict[str, str]:
    """Submit every step in plan order (a step comes after those it reads from); returns {step: job id}."""
    if plan.get("problems"):
        raise ValueError(f"the plan lists problems that would stop the chain: {plan['problems'][0]}")
    ids = {}
    for step in plan["steps"]:
        if "command" not in step:
            raise ValueError(f"plan step {step['step']} has no command: make the plan with "
                             "`python -m dmtrack report ... --plan --json`")
        ids[step["step"]] = run(sbatch_command(step, [ids[d] for d in step["deps"]], extra))
    return ids


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("plan", help="the output of `dmtrack report ... --plan --json` (- for stdin)")
    p.add_argument("--dry-run", action="store_true", help="print the sbatch commands with placeholder job ids; submit nothing")
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)  # after --: options for every sbatch call
    args, extra = p.parse_args(argv[:cut]), argv[cut + 1:]
    plan = json.load(sys.stdin if args.plan == "-" else open(args.plan))
    run, numbers = sbatch, iter(range(1, len(plan.get("steps", [])) + 1))
    if args.dry_run:
        def run(cmd):
            print(shlex.join(cmd))
            return f"JOB{next(numbers)}"  # placeholder job ids, in submission order
    try:
        ids = submit(plan, extra, run)
    except (ValueError, subprocess.CalledProcessError) as e:
        print(f"error: {getattr(e, 'stderr', None) or e}".strip(), file=sys.stderr)
        return 1
    print(f"{len(ids)} job(s) {'planned' if args.dry_run else 'submitted'}; last: {list(ids.values())[-1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
