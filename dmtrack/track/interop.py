"""Drive a dmtrack `Tracker` from the got10k toolkit (`got10k.trackers.Tracker`: init / update).

    from got10k.experiments import ExperimentOTB
    adapter = Got10kTracker(tracker, sentences={"Basketball": "the player in green ..."})
    ExperimentOTB("data/OTB", version=2013, result_dir="runs/got10k").run(adapter)

got10k hands over PIL images and knows nothing of sentences, so the sentence of a sequence
comes separately: a {sequence name: sentence} mapping looked up by the name of the folder
that holds the frames (got10k's OTB, LaSOT, ... layouts put frames in <seq>/img/ or
<seq>/; both are tried), or a callable(img_files) -> sentence, or `set_sentence` before init.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from got10k.trackers import Tracker as _Got10kBase


class Got10kTracker(_Got10kBase):
    def __init__(self, tracker, sentences=None, name: str = "DMTrack"):
        super().__init__(name=name, is_deterministic=tracker.seed is not None)
        self.tracker = tracker
        self.sentences = sentences if sentences is not None else {}
        self._sentence = None

    def set_sentence(self, text: str) -> None:
        """Sentence for the next `init` (overrides the mapping)."""
        self._sentence = text

    def sentence_for(self, img_files) -> str:
        if callable(self.sentences):
            return self.sentences(img_files)
        first = Path(img_files[0])
        for folder in (first.parent, first.parent.parent):  # <seq>/img/0001.jpg or <seq>/0001.jpg
            if folder.name in self.sentences:
                return self.sentences[folder.name]
        raise KeyError(f"no sentence for the sequence of {first} (mapping has {len(self.sentences)} names)")

    def track(self, img_files, box, visualize=False):
        # got10k's loop, with the sequence's sentence looked up first (the toolkit never passes it)
        if self._sentence is None:
            self._sentence = self.sentence_for(img_files)
        try:
            return super().track(img_files, box, visualize=visualize)
        finally:
            self._sentence = None

    def init(self, image, box):
        if self._sentence is None:
            raise RuntimeError("no sentence: call set_sentence(text) or give a sentences mapping")
        self.tracker.initialize(np.asarray(image.convert("RGB")), box, self._sentence)

    def update(self, image):
        return self.tracker.track(np.asarray(image.convert("RGB")), return_mask=False)["box"]
