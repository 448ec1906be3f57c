"""The smoke chain end to end (data -> 6 variants trained -> evaluations -> Fig. 7 -> report), and the
rendered report opened in headless Chromium. Everything is written below pytest's tmp folder."""
import asyncio
import base64
import io
import json
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from dmtrack.config import VARIANTS
from dmtrack.chain import pipeline, steps

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Run `dmtrack report --profile smoke` once, with another tracker's raw results supplied."""
    root = tmp_path_factory.mktemp("smoke")
    data, work, reports = root / "data", root / "runs", root / "reports"
    steps.prepare_data(True, data, "smoke")  # the chain finds it done; we need it to write the other tracker's files
    other = root / "other"
    for b in ("tnl2k", "otb_lang"):  # "OtherTracker": the ground truth moved by 3 px
        for seq in steps.load_sequences(f"synthetic_{b}", data):
            (other / b).mkdir(parents=True, exist_ok=True)
            np.savetxt(other / b / f"{seq.name}.txt", seq.boxes + [3, 3, 0, 0], fmt="%.2f", delimiter=",")
    logs = []
    t0 = time.time()
    html = pipeline.reproduce("smoke", reports=reports, work=work, data=data, others={"OtherTracker": str(other)},
                              log=logs.append)
    return dict(root=root, html=html, work=work, reports=reports, data=data, other=other, logs=logs,
                seconds=time.time() - t0)


def test_smoke_chain_writes_the_report(smoke):
    html = smoke["html"]
    assert html == smoke["reports"] / "index.html" and html.exists()
    runs = smoke["reports"] / "runs" / "smoke"
    manifest = json.loads((runs / "manifest.json").read_text())
    names = [s["step"] for s in manifest["steps"]]
    assert names[0] == "00_data" and names[-1] == "40_report"
    assert {f"10_train/{v}_seed0" for v in VARIANTS} | {"10_train/base", "10_train/full-scratch_seed0"} <= set(names)
    assert names.index("10_train/base") < min(names.index(f"10_train/{v}_seed0") for v in VARIANTS)
    from dmtrack.model import load_checkpoint
    from dmtrack.provenance import file_sha256
    base = smoke["work"] / "train" / "base" / "seed0" / "model.pth"
    for v in VARIANTS:  # every variant fine-tuned from the one base tracker; the scratch arm from nothing
        assert load_checkpoint(smoke["work"] / "train" / v / "seed0" / "model.pth")["pretrained_sha256"] == file_sha256(base)
    assert load_checkpoint(smoke["work"] / "train" / "full-scratch" / "seed0" / "model.pth")["pretrained_sha256"] is None
    for arm, scramble in (("authors", True), ("authors-noscramble", False)):  # the authors arms: from the same base tracker
        ckpt = load_checkpoint(smoke["work"] / "train" / f"full-{arm}" / "seed0" / "model.pth")
        assert ckpt["pretrained_sha256"] == file_sha256(base)
        assert (ckpt["config"]["reading"], ckpt["config"]["authors_view_scramble"]) == ("authors", scramble)
    for name in names:  # every step keeps its executed notebook and its parameter stamp
        assert (runs / f"{name}.ipynb").exists() and json.loads((runs / f"{name}.json").read_text())["key"]
    assert manifest["synthetic"] is True and manifest["git"]["commit"] and manifest["packages"]["papermill"]
    text = html.read_text()
    for must in ("Table 1", "Table 2", "Section 4.3", "Fig. 7", "sampling chain", "the k samples", "drift",
                 "SYNTHETIC STAND-IN", "synthetic stand-in", "protocol: pytracking", "protocol: official",
                 "Run durations", "inconclusive", "OtherTracker (raw results re-scored)", "Published numbers",
                 "The paper, the authors' code and this study", "The paper's reading against the authors'",
                 "the scramble under maps, k=5", "The authors' arms cost about"):
        assert must in text, must
    assert "<script" not in text and "steps.evaluate_variant" not in text  # code hidden, nothing to run
    assert not re.search(r"\w+Warning: ", text)  # no library's warning (it opened the report: TqdmWarning, IProgress)
    assert 'data-mime-type="application/vnd.jupyter.stderr"' not in text
    assert text.count('src="data:image/png;base64,') >= 8  # Fig. 7 panels, strips, sweeps, sample frames
    assert "report: " + str(html) in smoke["logs"][-1]
    assert (runs / "index.html").read_text() == text


def test_other_tracker_is_rescored_by_our_evaluator(smoke):
    from dmtrack.eval.results import score_folder

    seqs = steps.load_sequences("synthetic_otb_lang", smoke["data"])
    expected = score_folder(smoke["other"] / "otb_lang", seqs, protocol="official").overall()["auc"]
    got = json.loads((smoke["work"] / "results" / "synthetic_otb_lang" / "OtherTracker" / "raw" / "scores_official.json").read_text())
    assert got["overall"]["auc"] == pytest.approx(expected) and 0 < expected < 100
    assert f"{expected:.1f}" in smoke["html"].read_text()


def test_rerun_skips_every_step(smoke):
    logs = []
    pipeline.reproduce("smoke", reports=smoke["reports"], work=smoke["work"], data=smoke["data"],
                       others={"OtherTracker": str(smoke["other"])}, log=logs.append)
    ran = [line for line in logs if line.startswith("[run ]")]
    skipped = [line for line in logs if line.startswith("[skip]")]
    assert ran == [] and len(skipped) == len(pipeline.plan("smoke", pipeline.default_paths("smoke", smoke["reports"],
                                                                                            smoke["work"], smoke["data"])))


# --- a real browser --------------------------------------------------------------------------------------
def _devtools(url: str, profile: Path) -> dict:
    """Open `url` in headless Chromium through the DevTools protocol; return what the page shows and every
    error it reported (exceptions, console errors, failed or non-local requests)."""
    from tornado.websocket import websocket_connect

    proc = subprocess.Popen([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                             "--disable-background-networking", "--disable-component-update", "--disable-sync",
                             "--window-size=1280,2000", f"--user-data-dir={profile}", "--remote-debugging-port=0",
                             "about:blank"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        deadline, port = time.time() + 60, None
        while port is None and time.time() < deadline:
            line = proc.stderr.readline()
            m = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
            port = int(m.group(1)) if m else None
            if not line and proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {proc.returncode} before DevTools started")
        assert port, "chromium did not start DevTools within 60 s"
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
        ws_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")

        async def session():
            ws = await websocket_connect(ws_url, max_message_size=64 << 20)
            events, ids = [], iter(range(1, 1000))

            async def call(method, **params):
                i = next(ids)
                ws.write_message(json.dumps({"id": i, "method": method, "params": params}))
                while True:
                    msg = json.loads(await asyncio.wait_for(ws.read_message(), 60))
                    if msg.get("id") == i:
                        if "error" in msg:
                            raise RuntimeError(f"{method}: {msg['error']}")
                        return msg.get("result", {})
                    events.append(msg)

            for domain in ("Page", "Runtime", "Log", "Network"):
                await call(f"{domain}.enable")
            await call("Page.navigate", url=url)
            while not any(e.get("method") == "Page.loadEventFired" for e in events):
                events.append(json.loads(await asyncio.wait_for(ws.read_message(), 60)))
            probe = await call("Runtime.evaluate", returnByValue=True, expression="""JSON.stringify({
                tables: document.querySelectorAll('table').length,
                images: document.images.length,
                broken: [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).length,
                headings: [...document.querySelectorAll('h1, h2')].map(h => h.innerText),
                text: document.body.innerText})""")
            shot = await call("Page.captureScreenshot", format="png")
            ws.close()
            return json.loads(probe["result"]["value"]), base64.b64decode(shot["data"]), events

        page, png, events = asyncio.run(session())
    finally:
        proc.kill()
        proc.wait()
    errors = [e for e in events if e.get("method") == "Runtime.exceptionThrown"
              or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] == "error")
              or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
              or e.get("method") == "Network.loadingFailed"]
    remote = [e["params"]["request"]["url"] for e in events if e.get("method") == "Network.requestWillBeSent"
              and not e["params"]["request"]["url"].startswith(("file:", "data:"))]
    return dict(page=page, png=png, errors=errors, remote=remote)


def test_report_in_headless_chromium(smoke, tmp_path):
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (Debian package 'chromium'; .ci/run installs it): "
                    "the rendered report was not opened in a browser")
    seen = _devtools(smoke["html"].as_uri(), tmp_path / "chromium-profile")
    page = seen["page"]
    assert seen["errors"] == [], seen["errors"][:3]
    assert seen["remote"] == []  # self-contained: nothing fetched from the network
    assert page["tables"] >= 10 and page["images"] >= 8 and page["broken"] == 0
    heads = " | ".join(page["headings"])
    for h in ("DMTrack reproduction report", "Table 1", "Table 2", "Section 4.3", "Fig. 7", "as k and the steps per chain grow",
              "language-drift level", "Run durations"):
        assert h in heads, h
    assert "SYNTHETIC STAND-IN" in page["text"] and "protocol: pytracking" in page["text"]
    assert not re.search(r"\w+Warning: ", page["text"]), page["text"][:300]  # what a reader sees first is the report
    from PIL import Image

    shot = np.asarray(Image.open(io.BytesIO(seen["png"])).convert("L"))
    assert shot.shape[1] >= 1000 and shot.std() > 10  # the page painted text and figures, not a blank canvas
