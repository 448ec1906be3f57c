"""Errors on the command line: one line `dmtrack <command>: error: <message>` and a non-zero exit (2 for
the command line or the config, 1 for the rest, 128 + N for signal N), no traceback; a bug keeps its
traceback; `dmtrack --debug` and DMTRACK_DEBUG=1 add the traceback to the line."""
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dmtrack.cli import UsageError, main

REPO = Path(__file__).resolve().parents[1]


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.rstrip("\n")


@pytest.mark.parametrize("argv, status, line", [
    (["train", "--profile", "smoke", "--out", "{tmp}/x", "nosuchkey=1"], 2,
     "dmtrack train: error: unknown config key(s): nosuchkey (known keys: "),
    (["train", "--profile", "smoke", "--out", "{tmp}/x", "--set", "precision=bf16"], 2,  # the training's, named apart
     "dmtrack train: error: unknown config key(s): precision was renamed train_precision (known keys: "),
    (["train", "--profile", "smoke", "--out", "{tmp}/x", "epochs=-1"], 2,
     "dmtrack train: error: config key 'epochs' = -1 is out of range; allowed: [1, inf)"),
    (["train", "--profile", "smoke", "--out", "{tmp}/x", "epochs=1.5"], 2,
     "dmtrack train: error: config key 'epochs' expects int, got 1.5"),
    (["train", "--profile", "smoke", "--out", "{tmp}/x", "epochs=1", "--set", "epochs=2"], 2,
     "dmtrack train: error: config key(s) given twice: epochs"),
    (["evaluate", "--checkpoint", "{tmp}/none.pth", "--benchmark", "synthetic_otb_lang", "--data-root", "{tmp}",
      "--out", "{tmp}/e"], 1, "dmtrack evaluate: error: checkpoint not found: {tmp}/none.pth"),
    (["data", "list", "--benchmark", "synthetic_otb_lang", "--data-root", "{tmp}"], 1,
     "dmtrack data: error: missing OTB-Lang query folder: {tmp}/otb_lang/OTB_query_test"),
    (["data", "list", "--benchmark", "nosuch", "--data-root", "{tmp}"], 2, "dmtrack data: error: unknown benchmark 'nosuch'"),
    (["score", "--results", "{tmp}"], 2, "dmtrack score: error: --benchmark is required with --results / --baseline"),
    (["bench", "nosuch"], 2, "dmtrack bench: error: no benchmark "),
])
def test_user_errors_are_one_line_and_a_status(tmp_path, capsys, argv, status, line):
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == status
    assert _one_line(capsys).startswith(line.replace("{tmp}", str(tmp_path)))
    assert not (tmp_path / "x").exists()


def test_a_wrong_option_is_one_line_too(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--profile", "smoke", "--out", "x", "--nope"])
    assert e.value.code == 2 and _one_line(capsys) == "dmtrack train: error: unrecognized arguments: --nope"
    with pytest.raises(SystemExit) as e:
        main(["data", "synth", "--preset", "smoke", "--out", "x", "--drift", "2"])
    assert e.value.code == 2
    assert _one_line(capsys) == "dmtrack data synth: error: argument --drift: expects a number in [0, 1], got '2'"
    with pytest.raises(SystemExit) as e:
        main(["nosuch"])
    assert e.value.code == 2 and _one_line(capsys).startswith("dmtrack: error: argument <command>: invalid choice: 'nosuch'")


@pytest.mark.parametrize("option, value", [("--max-frames", "0"), ("--steps", "0"), ("--batch", "0"), ("--batch", "-1"),
                                           ("--workers", "0"), ("--workers", "-2"), ("--samples", "0"), ("--workers", "two")])
def test_evaluate_refuses_a_count_below_one_as_a_usage_error(tmp_path, capsys, option, value):
    # --max-frames 0 was an IndexError traceback; the others were run and recorded as given
    with pytest.raises(SystemExit) as e:
        main(["evaluate", "--checkpoint", str(tmp_path / "m.pth"), "--benchmark", "synthetic_lasot", "--out",
              str(tmp_path / "e"), option, value])
    assert e.value.code == 2
    assert _one_line(capsys) == f"dmtrack evaluate: error: argument {option}: expects a positive integer, got '{value}'"
    assert not (tmp_path / "e").exists()


WEIGHTS_MISSING = ("dmtrack train: error: profile paper trains at the paper's settings and needs its weights: pretrained= is "
                   "not set: give the OSTrack or MAE ViT-B checkpoint (--set pretrained=/path/OSTrack_ep0300.pth.tar), or "
                   "--set pretrained=none to train from scratch; text_encoder=minilm is not a BERT directory: give "
                   "bert-base-uncased (--set text_encoder=/path/bert-base-uncased), or --set text_encoder=minilm with "
                   "--allow-minilm to run with the packaged MiniLM; ")
DATA_MISSING = ("no training data for lasot at {d}/LaSOT, tnl2k at {d}/TNL2K, otb_lang at {d}/OTB_lang, refcocog at "
                "{d}/refcoco (set --data-root or $DMTRACK_DATA)")


@pytest.mark.parametrize("options, status, line", [
    ([], 2, WEIGHTS_MISSING + DATA_MISSING + '. See README.md, section "Pointing the project at real datasets and weights".'),
    (["--set", "pretrained=none", "--allow-minilm"], 1, "dmtrack train: error: " + DATA_MISSING),
])
def test_train_paper_names_every_missing_precondition_in_one_line(tmp_path, monkeypatch, capsys, options, status, line):
    # it named only the missing LaSOT folder: a user fixing that met the next dataset, then the weights
    for var in [k for k in os.environ if k.startswith("DMTRACK_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("DMTRACK_DATA", str(tmp_path / "data"))
    assert main(["train", "--profile", "paper", "--out", str(tmp_path / "x"), *options]) == status
    assert _one_line(capsys) == line.format(d=tmp_path / "data")
    assert not (tmp_path / "x").exists()


def test_train_names_a_missing_pretrained_file_before_the_data(tmp_path, capsys):
    assert main(["train", "--profile", "smoke", "--out", str(tmp_path / "x"), "--data-root", str(tmp_path),
                 "--set", f"pretrained={tmp_path}/nope.pth"]) == 2
    assert _one_line(capsys) == (f"dmtrack train: error: pretrained={tmp_path}/nope.pth: no such file; no training data "
                                 f"for synthetic at {tmp_path}/synthetic (set --data-root or $DMTRACK_DATA). See README.md, "
                                 'section "Pointing the project at real datasets and weights".')


def _raising(monkeypatch, error):
    """`dmtrack score` raising `error` once its arguments are parsed."""
    def run(args):
        raise error
    monkeypatch.setattr(importlib.import_module("dmtrack.eval.cli"), "run", run)
    return ["score", "--results", "r"]


@pytest.mark.parametrize("error, status, message", [
    (ValueError("frame 3 of /d/seq/groundtruth.txt: 4 numbers expected\n  got: 58,64,,15"), 1,
     "frame 3 of /d/seq/groundtruth.txt: 4 numbers expected got: 58,64,,15"),  # one line, whatever the message
    (FileNotFoundError(2, "No such file or directory", "/d/seq/img/00000001.jpg"), 1,
     "/d/seq/img/00000001.jpg: No such file or directory"),
    (BlockingIOError("runs/x is locked by process 123"), 1, "runs/x is locked by process 123"),
    (RuntimeError("step 10_train/full_seed0: notebook 10_train.ipynb failed"), 1,
     "step 10_train/full_seed0: notebook 10_train.ipynb failed"),
    (FileExistsError("runs/x/last.pth exists: pass --resume"), 2, "runs/x/last.pth exists: pass --resume"),
    (UsageError("--benchmark is required"), 2, "--benchmark is required"),
    (KeyError("unknown variant 'nope'; choose from full"), 2, "unknown variant 'nope'; choose from full"),  # no quotes added
    (KeyboardInterrupt(), 130, "interrupted"),
])
def test_status_and_message_of_each_kind_of_error(monkeypatch, capsys, error, status, message):
    assert main(_raising(monkeypatch, error)) == status
    assert _one_line(capsys) == f"dmtrack score: error: {message}"


@pytest.mark.parametrize("bug", [TypeError("unsupported operand"), AttributeError("no attribute 'boxes'"),
                                 IndexError("list index out of range"), KeyError("boxes"), KeyError(3),
                                 NotImplementedError("todo"), ZeroDivisionError("division by zero")])
def test_a_bug_keeps_its_traceback(monkeypatch, capsys, bug):
    with pytest.raises(type(bug)):
        main(_raising(monkeypatch, bug))
    assert capsys.readouterr().err == ""


def test_debug_adds_the_traceback(monkeypatch, capsys):
    argv = _raising(monkeypatch, ValueError("bad row"))
    assert main(["--debug", *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and err.endswith("\ndmtrack score: error: bad row\n")
    monkeypatch.setenv("DMTRACK_DEBUG", "1")
    assert main(argv) == 1 and "Traceback" in capsys.readouterr().err
    monkeypatch.setenv("DMTRACK_DEBUG", "0")
    assert main(argv) == 1 and _one_line(capsys) == "dmtrack score: error: bad row"


def test_the_installed_entry_point_prints_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("DMTRACK_DEBUG", None)
    res = subprocess.run([sys.executable, "-m", "dmtrack", "train", "--profile", "smoke", "--out", str(tmp_path / "x"),
                          "nosuchkey=1"], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert res.stderr.startswith("dmtrack train: error: unknown config key(s): nosuchkey (known keys: ")


def test_evaluate_refuses_more_samples_than_the_config_allows(tmp_path, capsys):
    # --samples had no upper bound in evaluate (the config's test_samples range is [1, 100])
    from dmtrack.config import load_config
    from dmtrack.model import build_model, save_checkpoint
    cfg = load_config("smoke", "full")
    ckpt = save_checkpoint(tmp_path / "m.pth", build_model(cfg), cfg)
    code = main(["evaluate", "--checkpoint", str(ckpt), "--benchmark", "synthetic_lasot", "--out",
                 str(tmp_path / "e"), "--samples", "101"])
    line = _one_line(capsys)
    assert code == 2 and line.startswith("dmtrack evaluate: error: ") and "test_samples" in line and "101" in line
    assert not (tmp_path / "e").exists()
    code = main(["evaluate", "--checkpoint", str(ckpt), "--benchmark", "synthetic_lasot", "--out",
                 str(tmp_path / "e"), "--eta", "1.5"])  # the sampler's DDIM eta, checked against the config's range too
    line = _one_line(capsys)
    assert code == 2 and line.startswith("dmtrack evaluate: error: ") and "sampler_eta" in line and "1.5" in line
    assert not (tmp_path / "e").exists()
