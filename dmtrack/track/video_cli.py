"""`dmtrack track`: follow a target through one's own video with a trained DMTrack model.

    python -m dmtrack track clip.mp4 --text "the red car on the left" --box 412,230,64,40 \\
        --checkpoint runs/demo/train/full/seed0/model.pth --out runs/clip [--masks] [--samples 5]

VIDEO is a video file (anything OpenCV reads) or a folder of frames (sorted by the numbers in
their names). Writes OUT/boxes.txt (x, y, w, h per frame, pytracking's format), OUT/boxes_time.txt
and OUT/tracked.mp4 (the box, the sentence and, with --masks, the diffusion mask); prints frames/s.
A rerun with --no-video deletes an old OUT/tracked.mp4; VIDEO may not be OUT/tracked.mp4 itself.
"""
from __future__ import annotations

NO_CHECKPOINT = ("no --checkpoint given: track needs a trained DMTrack model, e.g. "
                 "runs/demo/train/<variant>/seed<N>/model.pth as `make reproduce` leaves them, "
                 "or <out>/model.pth written by `dmtrack train --out <out>`")


def add_arguments(parser):
    parser.add_argument("video", help="video file (anything OpenCV reads) or folder of frame images")
    parser.add_argument("--text", default="", help="the sentence describing the target (only a no_language model tracks without one)")
    parser.add_argument("--box", required=True, help="the target in the first frame: x,y,w,h in pixels (top-left corner, size)")
    parser.add_argument("--checkpoint", default=None, help="model file written by `dmtrack train` (e.g. runs/demo/train/full/seed0/model.pth)")
    parser.add_argument("--out", required=True, help="folder for boxes.txt, boxes_time.txt and tracked.mp4")
    parser.add_argument("--samples", type=int, default=None,
                        help="k diffusion samplings per frame, 1 to 100 (default: the config's test_samples)")
    parser.add_argument("--masks", action="store_true", help="overlay the diffusion mask on tracked.mp4 (as the Fig. 7 panels)")
    parser.add_argument("--no-video", action="store_true", help="write boxes.txt only (no tracked.mp4)")
    parser.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: the config's device)")
    parser.add_argument("--max-frames", type=int, default=None, help="track only the first N frames")
    parser.add_argument("--seed", type=int, default=None, help="torch seed at the sequence start (default: the config's seed)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    if not args.checkpoint:
        raise ValueError(NO_CHECKPOINT)
    from ..config import ConfigError
    from .runner import load_model
    from .tracker import Tracker
    from .video import open_frames, parse_box, track_video

    box = parse_box(args.box)
    frames = open_frames(args.video, args.max_frames)
    model, cfg = load_model(args.checkpoint, args.device)
    if args.samples is not None:
        try:  # k's range is the config's (test_samples in dmtrack.config.RANGES)
            cfg = cfg.replace(test_samples=args.samples)
        except ConfigError as e:
            raise ConfigError(f"--samples {args.samples}: {e}") from None
    tracker = Tracker(model, cfg, device=args.device, samples=args.samples, bgr=frames.bgr,
                      seed=cfg.seed if args.seed is None else args.seed)
    res = track_video(tracker, frames, box, args.text, args.out, video=not args.no_video, masks=args.masks,
                      progress=False if args.no_progress else None)
    n, busy = len(res["boxes"]), float(res["times"].sum())
    print(f"{n} frames, k={tracker.samples}, {tracker.device}: {n / busy:.1f} frames/s tracking "
          f"({n / res['seconds']:.1f} frames/s with reading{'' if args.no_video else ' and drawing'})")
    print(f"boxes in {args.out}/boxes.txt" + ("" if args.no_video else f", video in {res['video']}"))
    return 0
