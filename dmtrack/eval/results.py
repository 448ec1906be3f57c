"""Raw tracking results in pytracking's layout, and matching result files to sequences.

    <results>/<tracker>/<param>[_<run_id:03d>]/<seq>.txt       one x, y, w, h row per frame, frame 1 included
    <results>/<tracker>/<param>[_<run_id:03d>]/<seq>_time.txt  one float per frame (seconds)

We write tab-separated boxes with 2 decimals (pytracking truncates to integers with
astype(int); pass decimals=None for that). Reading accepts tab, comma or space separated
rows, so other trackers' published raw results score with the same code: got10k's comma
%.3f, UVLTrack's tab integers, MATLAB toolkit files. Result folders may hold the files
directly or in one `<dataset>/` sub-folder (MMTrack's layout), and the multi-target OTB
names are matched across codebases (Jogging-1 / Jogging_1 / Jogging.1, Human4 / Human4_2).
A file far larger than raw results, binary, or with an overlong line is refused unread; errors
quote at most QUOTE characters of a row, and nothing of a file outside the results folder.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from dmtrack.data.names import canonical_name
from dmtrack.io import atomic_write_json, atomic_write_text
from dmtrack.layout import scores_path


def name_key(name: str) -> str:
    """Key under which a sequence name and its result-file aliases compare equal (the readers'
    one alias rule): 'Jogging-1', 'Jogging_1', 'Jogging.1' -> 'Jogging-1'; 'Human4_2' -> 'Human4'."""
    return canonical_name(name)


def write_results(directory, seq_name: str, boxes, times=None, decimals: int | None = 2) -> Path:
    """Write <directory>/<seq_name>.txt (and <seq_name>_time.txt when times are given)
    atomically. boxes: (N, 4) x, y, w, h, frame 1 included; times: N floats in seconds.
    decimals=None writes pytracking's truncated integers."""
    directory = Path(directory)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if decimals is None:
        boxes, fmt = boxes.astype(int), "%d"
    else:
        fmt = f"%.{decimals}f"
    buf = io.StringIO()
    np.savetxt(buf, boxes, fmt=fmt, delimiter="\t")
    path = directory / f"{seq_name}.txt"
    atomic_write_text(path, buf.getvalue())
    if times is not None:
        times = np.asarray(times, dtype=np.float64).reshape(-1)
        if len(times) != len(boxes):
            raise ValueError(f"{seq_name}: {len(times)} times for {len(boxes)} boxes")
        buf = io.StringIO()
        np.savetxt(buf, times, fmt="%.6f")
        atomic_write_text(directory / f"{seq_name}_time.txt", buf.getvalue())
    return path


def _fields(line: str) -> list[str]:
    """A row's fields: split at commas if the line has one, else at tabs, else at runs of spaces.
    Spaces around a comma or tab are part of the separator; an empty field stays (an error)."""
    line = line.strip()
    sep = "," if "," in line else "\t" if "\t" in line else None
    return [f.strip() for f in line.split(sep)] if sep else line.split()


# Limits of a raw-results file, generous for the real benchmarks: LaSOT's longest sequence has ~11k frames
# and a row takes < 100 bytes (~1.1 MB); a file or a line far beyond is not raw results (a misplaced video,
# a binary dump) and is refused before it is read whole. An error quotes at most QUOTE characters of a row.
MAX_RESULT_BYTES = 16 * 2**20
MAX_LINE_CHARS = 1000
QUOTE = 40


def _quote(line: str, quote: bool) -> str:
    """' <first QUOTE characters of the row>' for an error message; '' for a file outside the results folder."""
    line = line.strip()
    return f" {line[:QUOTE]!r}" + ("..." if len(line) > QUOTE else "") if quote else ""


def _parse_slow(path: Path, lines: list[str], ncols: int | None, quote: bool) -> np.ndarray:
    """Line-by-line parse that names the file and line of the first bad row."""
    rows, last = [], max((i for i, l in enumerate(lines) if l.strip()), default=-1)
    for i, line in enumerate(lines[: last + 1]):
        fields, where = _fields(line), f"{path}, line {i + 1}:"
        if not fields:
            raise ValueError(f"{where} empty line inside the results (frames would shift)")
        if "" in fields:
            raise ValueError(f"{where} empty field" + (f" in{_quote(line, quote)}" if quote else "")
                             + f" (field {fields.index('') + 1})")
        if ncols is not None and len(fields) != ncols:
            raise ValueError(f"{where} {len(fields)} fields, expected {ncols}" + (f":{_quote(line, quote)}" if quote else ""))
        try:
            rows.append([float(f) for f in fields])
        except ValueError:
            raise ValueError(f"{where} cannot parse{_quote(line, quote) or ' the row'} as numbers") from None
    if not rows:
        raise ValueError(f"{path}: no rows")
    return np.array(rows, dtype=np.float64)


def _read_text(path: Path) -> str:
    """The file's text, refused (one line naming it) when too large, binary, or with an overlong line."""
    too_big = f"{path}: more than {MAX_RESULT_BYTES} bytes, not a raw-results file (a row per frame takes < 100 bytes)"
    if path.stat().st_size > MAX_RESULT_BYTES:
        raise ValueError(too_big)
    with open(path, "rb") as f:  # at most the limit + 1 bytes: a device or a growing file claims no size
        data = f.read(MAX_RESULT_BYTES + 1)
    if len(data) > MAX_RESULT_BYTES:
        raise ValueError(too_big)
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file") from None
    if "\0" in text:  # valid UTF-8, but a sparse or binary file: no results
        raise ValueError(f"{path}: not a text file (NUL bytes)")
    long = next((i for i, line in enumerate(text.splitlines()) if len(line) > MAX_LINE_CHARS), None)
    if long is not None:
        raise ValueError(f"{path}, line {long + 1}: more than {MAX_LINE_CHARS} characters, not a row of numbers")
    return text


def _read_table(path, ncols: int | None, root=None) -> np.ndarray:
    path = Path(path)
    text = _read_text(path)
    # quote rows only of files inside the results folder: a link may lead to any file the user can read
    quote = root is None or path.resolve().is_relative_to(Path(root).resolve())
    lines = text.strip().replace(",", " ").replace("\t", " ").splitlines()
    # fast path: separators -> spaces, then numpy's C parser (a row with another number of
    # fields is an error there). Any doubt -> the slow, explicit parser: a blank line would be
    # skipped (every later frame shifted), an empty field such as the one in '58,64,,15,15'
    # would vanish, leaving more commas or tabs than the fields need.
    try:
        arr = np.loadtxt(lines, dtype=np.float64, comments=None, ndmin=2) if lines else None
        seps = text.count(",") + text.count("\t")
        if (arr is not None and len(arr) == len(lines) and (ncols is None or arr.shape[1] == ncols)
                and seps in (0, arr.shape[0] * (arr.shape[1] - 1))):
            return arr
    except ValueError:
        pass
    return _parse_slow(path, text.splitlines(), ncols, quote)


def read_results(path, root=None) -> np.ndarray:
    """(N, 4) float64 boxes from a raw-result file, tab, comma or space separated.
    NaN entries are kept (the protocol decides what they mean). root: the results folder the file
    was found in; an error quotes nothing of a file that resolves outside it (a link elsewhere).
    Files over MAX_RESULT_BYTES or with a line over MAX_LINE_CHARS are refused unread."""
    return _read_table(path, 4, root)


def read_times(path, root=None) -> np.ndarray:
    """(N,) seconds per frame from a <seq>_time.txt file (limits and root as read_results)."""
    return _read_table(path, None, root).reshape(-1)


def index_result_files(folder) -> dict[str, list[Path]]:
    """name_key -> result files (<seq>.txt, not *_time.txt) in `folder` and its immediate sub-folders."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"results folder {folder} does not exist")
    files = [p for p in folder.glob("*.txt")] + [p for p in folder.glob("*/*.txt")]
    index: dict[str, list[Path]] = {}
    for p in sorted(files, key=lambda p: (len(p.relative_to(folder).parts), str(p))):
        if not p.stem.endswith("_time"):
            index.setdefault(name_key(p.stem), []).append(p)
    return index


def find_result_files(folder, names, skip_missing: bool = False) -> tuple[dict[str, Path], list[str]]:
    """Match sequence names to result files. Returns ({name: path}, skipped names).
    Preference: the exact name directly in `folder`, then the exact name in a sub-folder,
    then an alias. A missing file is an error listing every missing name, unless skip_missing."""
    folder = Path(folder)
    index = index_result_files(folder)
    found, missing = {}, []
    for name in names:
        cands = index.get(name_key(name), [])
        exact = [p for p in cands if p.stem == name]
        pick = exact or cands
        if not pick:
            missing.append(name)
            continue
        top = [p for p in pick if p.parent == folder]
        if len(top) != 1 and len(pick) > 1:
            raise ValueError(f"{folder}: several result files match sequence {name!r}: "
                             + ", ".join(str(p.relative_to(folder)) for p in pick) + "; pass the sub-folder itself")
        found[name] = (top or pick)[0]
    if missing and not skip_missing:
        shown = ", ".join(missing[:20]) + (f", ... ({len(missing) - 20} more)" if len(missing) > 20 else "")
        raise FileNotFoundError(f"{folder}: no result file for {len(missing)} of {len(names)} sequences: {shown} "
                                "(use skip_missing / --skip-missing to score the others)")
    return found, missing


def load_results(folder, sequences, skip_missing: bool = False):
    """Read the result file of every sequence: ({name: (N, 4) boxes}, kept sequences, skipped names)."""
    sequences = list(sequences)
    paths, skipped = find_result_files(folder, [s.name for s in sequences], skip_missing)
    kept = [s for s in sequences if s.name in paths]
    return {s.name: read_results(paths[s.name], root=folder) for s in kept}, kept, skipped


def score_folder(folder, sequences, *, protocol: str = "pytracking", valid_rule: str | None = None,
                 dataset_tag: str | None = None, skip_missing: bool = False,
                 exclude_invalid_frames: bool = False, benchmark: str = ""):
    """Read the raw results in `folder` (the one holding <seq>.txt) and score them."""
    from .metrics import score_sequences

    preds, kept, skipped = load_results(folder, sequences, skip_missing)
    if not kept:
        raise FileNotFoundError(f"{folder}: no result file for any of the {len(skipped)} sequences")
    return score_sequences(preds, kept, protocol=protocol, valid_rule=valid_rule, dataset_tag=dataset_tag,
                           exclude_invalid_frames=exclude_invalid_frames, benchmark=benchmark, skipped=skipped)


def save_scores(folder, sequences, protocols, benchmark: str = "", dest=None, **kw) -> dict:
    """Score the raw results in `folder` under each protocol and write scores_<protocol>.json into
    `dest` (default: next to them); returns {protocol: Scores}. kw: as score_folder (e.g. skip_missing)."""
    scores = {}
    for protocol in protocols:
        scores[protocol] = score_folder(folder, sequences, protocol=protocol, benchmark=benchmark, **kw)
        atomic_write_json(scores_path(dest or folder, protocol), scores[protocol].to_json())
    return scores
