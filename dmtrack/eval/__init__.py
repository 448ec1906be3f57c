"""Evaluation: the one metric implementation (two named protocols), raw-result IO in
pytracking's layout, the trivial baselines and bootstrap statistics. See docs/protocol.md."""
from .baselines import BASELINES, baseline_boxes, run_baseline, score_baselines
from .metrics import (METRICS, NORM_PRECISION_THRESHOLDS, PRECISION_THRESHOLDS, PROTOCOLS, REPORTED, SUCCESS_THRESHOLDS,
                      VALID_RULES, InvalidResults, Scores, frame_errors, merge_runs, score_sequences,
                      sequence_curves)
from .results import (find_result_files, load_results, name_key, read_results, read_times, save_scores,
                      score_folder, write_results)
from .stats import CI, bootstrap_ci, paired_difference_ci

