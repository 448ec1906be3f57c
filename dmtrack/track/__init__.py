"""Online tracking: the `Tracker`, the benchmark runner (`evaluate` with its
`TrackSettings`, `DataSelection` and `Execution`; `track_sequence`), one's own
video (`track_video`, `open_frames`) and the got10k adapter (`Got10kTracker`, needs the got10k package). Names load on first use, so
`dmtrack evaluate --help` does not import torch."""
import importlib

_WHERE = {
    "Tracker": "tracker", "hann1d": "tracker", "hann2d": "tracker", "mask_to_image": "tracker",
    "evaluate": "runner", "track_benchmark": "runner", "track_sequence": "runner", "load_model": "runner",
    "CheckpointTracker": "runner", "load_masks": "runner", "TrackSettings": "runner", "DataSelection": "runner",
    "Execution": "runner",
    "track_video": "video", "open_frames": "video",
    "Got10kTracker": "interop", "BatchTracker": "batched",
}
__all__ = list(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
