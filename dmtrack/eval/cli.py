"""`dmtrack score`: score raw results (pytracking layout) under a named protocol.

    dmtrack score --benchmark lasot --results runs/dmtrack/demo --protocol pytracking --json out.json
    dmtrack score --benchmark lasot --results runs/t/p_000 runs/t/p_001   # several runs, merged (pytracking merge_results)
    dmtrack score --benchmark synthetic_lasot --baseline static            # generate + score a trivial tracker
    dmtrack score --baselines-all --data-root data/synthetic              # both trivial trackers, 4 suites, 2 protocols
                                                                          # into runs/baselines/<benchmark>/<tracker>/seed0
"""
from __future__ import annotations

from pathlib import Path

from dmtrack.cli import UsageError
from dmtrack.data import STAND_IN, load_benchmark
from dmtrack.data.benchmarks import SYNTHETIC_TEST_SUITES
from dmtrack.io import atomic_write_json

from .baselines import BASELINES, run_baseline, score_baselines
from .metrics import PROTOCOLS, VALID_RULES, merge_runs
from .results import score_folder

def add_arguments(p) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--results", nargs="+", metavar="DIR",
                     help="folder holding the <seq>.txt raw results (pytracking layout; a <dataset>/ sub-folder is found too); "
                          "several folders = several runs of one tracker (<param>_000 <param>_001 ...), merged as "
                          "pytracking's merge_results (per-sequence curves averaged over runs)")
    src.add_argument("--baseline", choices=BASELINES, help="generate this trivial tracker's results (into --out) and score them")
    src.add_argument("--baselines-all", action="store_true",
                     help="both trivial trackers on the 4 synthetic suites (or --benchmark), under both protocols")
    p.add_argument("--benchmark", help="benchmark name as understood by dmtrack.data.load_benchmark (e.g. lasot, tnl2k, synthetic_lasot)")
    p.add_argument("--data-root", help="dataset root (default: $DMTRACK_DATA/<dataset folder>)")
    p.add_argument("--split", default=None, help="benchmark split (default: the benchmark's usual test split)")
    p.add_argument("--protocol", choices=PROTOCOLS, default="pytracking",
                   help="pytracking: OSTrack/MMTrack family's calc_seq_err_robust; official: LaSOT/TNL2K/OTB MATLAB toolkits")
    p.add_argument("--valid-rule", choices=VALID_RULES, default=None,
                   help="which gt boxes are valid: wh = w,h > 0 (default for pytracking, as the VL codebases); "
                        "all4 = x,y,w,h > 0 (default for official; pytracking since 2022)")
    p.add_argument("--dataset-tag", default=None,
                   help="override the sequences' dataset tag (pytracking: only the exact tag 'lasot' makes invisible frames misses)")
    p.add_argument("--exclude-invalid-frames", action="store_true", help="pytracking option: N_s = valid frames only")
    p.add_argument("--skip-missing", action="store_true", help="score the sequences that have a result file, report how many were skipped")
    p.add_argument("--per-sequence", action="store_true", help="also print the per-sequence table")
    p.add_argument("--json", help="write the scores to this JSON file")
    p.add_argument("--out", help="where --baseline writes its raw results (default runs/baselines/<benchmark>/<name>); "
                              "with --baselines-all the results root (default runs/baselines: <benchmark>/<name>/seed<N>/)")
    p.add_argument("--seed", type=int, default=0, help="seed of the oracle-jitter noise")


def run(args) -> int:
    if args.baselines_all:
        benches = [args.benchmark] if args.benchmark else list(SYNTHETIC_TEST_SUITES)
        df = score_baselines(benches, args.out or "runs/baselines", args.data_root, seed=args.seed, split=args.split)
        stand_in = f" on the {STAND_IN} suites (not the real benchmarks)" if all(
            b.startswith("synthetic") for b in benches) else ""
        print(f"trivial trackers (static = first box held still; oracle-jitter = gt + seeded noise){stand_in}, percent")
        print(df.round(2).to_string(index=False))
        if args.json:
            atomic_write_json(args.json, df.to_dict(orient="records"))
        return 0
    if not args.benchmark:
        raise UsageError("--benchmark is required with --results / --baseline")
    # scoring reads the annotations only: listing the frames would be most of the time on LaSOT
    seqs = load_benchmark(args.benchmark, args.data_root, args.split, frames=False)
    folders = [args.results] if isinstance(args.results, str) else args.results
    if args.baseline:
        folders = [run_baseline(args.baseline, seqs, args.out or Path("runs/baselines") / args.benchmark / args.baseline, args.seed)]
        print(f"{args.baseline}: raw results in {folders[0]}")
    runs = [score_folder(f, seqs, protocol=args.protocol, valid_rule=args.valid_rule, dataset_tag=args.dataset_tag,
                         skip_missing=args.skip_missing, exclude_invalid_frames=args.exclude_invalid_frames,
                         benchmark=args.benchmark) for f in folders]
    sc = runs[0] if len(runs) == 1 else merge_runs(runs)
    if sc.skipped:
        print(f"skipped {len(sc.skipped)} of {len(seqs)} sequences without a result file: {', '.join(sc.skipped[:10])}"
              + (" ..." if len(sc.skipped) > 10 else ""))
    print(sc.table(per_sequence=False))
    if args.per_sequence:
        print(sc.table(per_sequence=True))
    if args.json:
        atomic_write_json(args.json, sc.to_json())
        print(f"wrote {args.json}")
    return 0

