"""`dmtrack evaluate`: track a benchmark with a checkpoint, write raw results, score them.

    python -m dmtrack evaluate --checkpoint runs/full/model.pth --benchmark synthetic_lasot \\
        --data-root data/synthetic --samples 5 --out runs/full/eval/synthetic_lasot --workers 2

Stopping it (Ctrl-C, a killed job) and running the same command again resumes: finished
sequences are skipped, and no partial result file is ever left behind.
"""
from __future__ import annotations

from ..cli import gpu_list, positive_int


def add_arguments(parser):
    from ..config import PRECISIONS
    from ..layout import SENTENCE_TAGS

    parser.add_argument("--checkpoint", required=True, help="model file written by save_checkpoint (weights + config)")
    parser.add_argument("--benchmark", required=True,
                        help="lasot | lasot_ext | tnl2k | otb_lang | synthetic_lasot | synthetic_lasot_ext | "
                             "synthetic_tnl2k | synthetic_otb_lang (see `dmtrack data list`)")
    parser.add_argument("--data-root", default=None, help="the benchmark's folder (default: $DMTRACK_DATA/<dataset>)")
    parser.add_argument("--split", default=None, help="dataset split (default: the benchmark's test split)")
    parser.add_argument("--samples", type=positive_int, default=None, help="k diffusion samplings per frame (default: the config's test_samples)")
    parser.add_argument("--steps", type=positive_int, default=None,
                        help="DDIM steps per sampling chain (default: the config's sampling_steps; final reading only)")
    parser.add_argument("--sentence", choices=tuple(SENTENCE_TAGS), default="true",
                        help="track with the sequences' own sentence, one describing a distractor, or the class word "
                             "alone (the language-robustness test; dmtrack.data.sentences)")
    parser.add_argument("--average", choices=("final", "chain", "maps"), default=None,
                        help="final: k chains, final masks averaged; chain: one chain of k steps, its x0 predictions "
                             "averaged; maps: one chain of k steps, the head's maps of each step averaged (the "
                             "authors'); default: the config's test_average (docs/method.md)")
    parser.add_argument("--eta", type=float, default=None,
                        help="the sampler's DDIM eta in [0, 1]: 1 = the paper's stochastic reverse step (Eq. 5), "
                             "0 = deterministic DDIM (default: the config's sampler_eta; docs/method.md)")
    parser.add_argument("--out", required=True, help="folder for <seq>.txt, <seq>_time.txt and the score JSONs")
    parser.add_argument("--workers", type=positive_int, default=1, help="parallel processes, one sequence each (default 1)")
    parser.add_argument("--gpus", default=None, metavar="ID,ID,...", type=gpu_list,
                        help="GPUs the workers spread over, worker i seeing only the i-th (in turn), as "
                             "CUDA_VISIBLE_DEVICES names them; one worker runs on the first (default with --workers > 1 "
                             "and no --device: every GPU this process sees; none: every worker on cuda:0)")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS,
                        help="autocast of the tracker's network (default fp32; see docs/tracking.md)")
    parser.add_argument("--batch", type=positive_int, default=1,
                        help="sequences tracked at once, one batched forward per frame (same results; with --workers 1)")
    parser.add_argument("--max-frames", type=positive_int, default=None, help="track only the first N frames of each sequence")
    parser.add_argument("--sequences", default=None, help="comma-separated sequence names to run (default: all)")
    parser.add_argument("--protocol", default="both", choices=("both", "pytracking", "official", "none"),
                        help="score the results under these protocols at the end (default both)")
    parser.add_argument("--save-masks", action="store_true", help="also write <out>/masks/<seq>.npz (per-frame masks, search-crop size)")
    parser.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: the config's device)")
    parser.add_argument("--seed", type=int, default=None, help="torch seed at each sequence start (default: the config's seed; "
                                                                 "a config with test_seeded=false draws a fresh one)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def worker_gpus(gpus: list | None, device: str | None, workers: int) -> list | None:
    """The GPUs `evaluate` spreads its workers over: `gpus` checked against the visible ones (UsageError
    naming them); by default every visible GPU when several workers run on the config's device or cuda."""
    from ..cli import UsageError
    from ..provenance import check_gpus, visible_gpus

    if gpus is None:
        return (visible_gpus() if workers > 1 and device in (None, "auto", "cuda") else None) or None
    if gpus and device not in (None, "auto", "cuda"):  # a worker given a GPU sees it alone, as cuda:0
        raise UsageError(f"--gpus {','.join(gpus)} with --device {device}: give one of them")
    try:
        return check_gpus(gpus) or None
    except ValueError as e:
        raise UsageError(str(e)) from None


def run(args) -> int:
    from ..eval.metrics import PROTOCOLS
    from .runner import DataSelection, Execution, TrackSettings, evaluate

    protocols = {"both": PROTOCOLS, "none": ()}.get(args.protocol, (args.protocol,))
    names = [n.strip() for n in args.sequences.split(",") if n.strip()] if args.sequences else None
    settings = TrackSettings(samples=args.samples, seed=args.seed, average=args.average, steps=args.steps,
                             precision=args.precision, device=args.device, batch=args.batch, eta=args.eta)
    data = DataSelection(root=args.data_root, split=args.split, sequences=names, max_frames=args.max_frames,
                         sentence=args.sentence)
    execution = Execution(workers=args.workers, gpus=worker_gpus(args.gpus, args.device, args.workers),
                          progress=False if args.no_progress else None)
    scores = evaluate(args.checkpoint, args.benchmark, args.out, settings, data, execution,
                      save_masks=args.save_masks, protocols=protocols)
    for s in scores.values():
        print(s.table())
    print(f"raw results and scores in {args.out}")
    return 0
