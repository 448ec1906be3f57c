"""Online tracking: the `Tracker`, the benchmark runner (`evaluate`, `track_sequence`) and the
got10k adapter (`Got10kTracker`, imported on first use: it needs the got10k package)."""
from .runner import FrameError, evaluate, load_model, load_masks, read_frame, score_results, track_sequence
from .tracker import Tracker, hann1d, hann2d, mask_to_image

__all__ = ["Tracker", "hann1d", "hann2d", "mask_to_image", "evaluate", "track_sequence", "read_frame",
           "load_model", "load_masks", "score_results", "FrameError", "Got10kTracker"]


def __getattr__(name):
    if name == "Got10kTracker":
        from .interop import Got10kTracker
        return Got10kTracker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
