"""Datasets: the one Sequence type, readers for the real benchmarks, the synthetic benchmark."""
from .benchmarks import BENCHMARKS, STAND_IN, load_benchmark
from .files import DatasetError, FrameError, MissingFileError, read_frame
from .names import canonical_name
from .sequence import Sequence, clean_text, dataset_root, truncate

__all__ = ["BENCHMARKS", "STAND_IN", "DatasetError", "FrameError", "MissingFileError", "Sequence", "canonical_name",
           "clean_text", "dataset_root", "load_benchmark", "read_frame", "truncate"]
