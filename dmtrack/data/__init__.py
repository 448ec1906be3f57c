"""Datasets: the one Sequence type, readers for the real benchmarks, the synthetic benchmark."""
from .names import canonical_name
from .readers import BENCHMARKS, DatasetError, MissingFileError, load_benchmark
from .sequence import Sequence, clean_text, dataset_root

__all__ = ["BENCHMARKS", "DatasetError", "MissingFileError", "Sequence", "canonical_name", "clean_text",
           "dataset_root", "load_benchmark"]
