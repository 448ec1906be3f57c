"""DMTrack model: visual encoder, language encoder, fusion, diffusion, filtering, head, losses.

    from dmtrack.model import build_model, decode_boxes, save_checkpoint, load_checkpoint, DMTrack
"""
from .dmtrack import DMTrack, DMTrackOutput, box_mask, build_model, resolve_eta, sampling_plan
from .head import decode_boxes

from .weights import load_checkpoint, load_pretrained_backbone, load_weights, save_checkpoint

__all__ = ["DMTrack", "DMTrackOutput", "build_model", "decode_boxes", "box_mask", "save_checkpoint", "load_checkpoint",
           "load_pretrained_backbone", "load_weights", "resolve_eta", "sampling_plan"]
