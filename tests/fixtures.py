"""Writers of tiny datasets in the exact real on-disk layouts (docs/datasets.md), shared by the
reader tests and the end-to-end paper chain. Images are flat grey JPEG/PNG files of `size` (w, h)."""
import json
import pickle
from functools import cache
from pathlib import Path

import cv2
import numpy as np

from dmtrack.data.lasot import write_sequence


@cache
def _encoded(ext: str, size: tuple) -> bytes:
    w, h = size
    return cv2.imencode(ext, np.full((h, w, 3), 127, np.uint8))[1].tobytes()


def write_images(folder: Path, names, size=(8, 8)):
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).write_bytes(_encoded(".png" if n.endswith(".png") else ".jpg", tuple(size)))


def write_rows(path: Path, rows, sep=","):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(sep.join(str(v) for v in r) + "\n" for r in rows))


def boxes(n, x0=1):
    return [[x0 + i, 2 * i + 1, 10 + i, 20] for i in range(n)]


# LaSOT and LaSOT_ext: <root>/<class>/<class>-<k>/
def write_lasot_seq(root, name, n=5, occ=None, oov=None, text="white airplane flying in the sky\n",
                    n_imgs=None, drift=None, size=(8, 8)):
    """<root>/<class>/<class>-<k>/ with img/%08d.jpg, groundtruth.txt, the flag files, nlp.txt
    (dmtrack.data.lasot.write_sequence, the writer the synthetic benchmark and bench/ use too)."""
    folder = write_sequence(root / name.rsplit("-", 1)[0] / name, boxes(n), text, occ, oov,
                            frames=[_encoded(".jpg", tuple(size))] * (n_imgs or n))
    if drift is not None:
        (folder / "drift.txt").write_text("".join(f"{d}\n" for d in drift))
    return folder


# TNL2K: <root>/{test,train}/[<part folder>/]<seq>/{imgs/, groundtruth.txt, language.txt}
def write_tnl2k_seq(split_dir, name, img_names, rows, text="the man in white shirt running on the road ",
                    attributes=None, size=(8, 8)):
    folder = split_dir / name
    write_images(folder / "imgs", img_names, size)
    write_rows(folder / "groundtruth.txt", rows)
    if text is not None:
        (folder / "language.txt").write_text(text)
    if attributes is not None:
        (folder / "attributes.txt").write_text(attributes)
    return folder


# OTB99-Lang: <root>/OTB_videos/<video>/, <root>/OTB_query_{train,test}/<name>.txt
def write_otb_video(root, folder, gt, n_imgs, fmt="{:04d}.jpg", sep=",", img_dir="img", size=(8, 8)):
    """OTB_videos/<folder>/img/%04d.jpg + gt files {file name: rows}."""
    video = root / "OTB_videos" / folder
    write_images(video / img_dir, [fmt.format(i) for i in range(1, n_imgs + 1)], size)
    for fname, rows in gt.items():
        write_rows(video / fname, rows, sep)
    return video


def write_query(root, split, name, text):
    (root / f"OTB_query_{split}").mkdir(parents=True, exist_ok=True)
    (root / f"OTB_query_{split}" / f"{name}.txt").write_text(text)


# RefCOCOg (google): <root>/refcocog/{refs(google).p, instances.json}, <root>/images/mscoco/images/train2014/
def ref(ref_id, ann_id, image_id, split, sentences, category_id=1):
    """One refs(google).p entry as the refer API writes it; sentences = [(sent_id, sent), ...]."""
    return {"ref_id": ref_id, "ann_id": ann_id, "image_id": image_id, "category_id": category_id, "split": split,
            "file_name": f"COCO_train2014_{image_id:012d}_{ann_id}.jpg", "sent_ids": [i for i, _ in sentences],
            "sentences": [{"sent": t, "raw": t.capitalize() + ".", "sent_id": i, "tokens": t.split()} for i, t in sentences]}


def write_refcocog(root, refs, annotations, categories, size=(8, 8)):
    """refs: refs(google).p entries; annotations: COCO annotations (id, image_id, bbox, iscrowd, ...);
    writes instances.json and one image per image_id."""
    (root / "refcocog").mkdir(parents=True, exist_ok=True)
    with open(root / "refcocog" / "refs(google).p", "wb") as f:
        pickle.dump(refs, f, protocol=2)
    ids = sorted({a["image_id"] for a in annotations})
    names = [f"COCO_train2014_{i:012d}.jpg" for i in ids]
    inst = {"images": [{"id": i, "file_name": n, "width": size[0], "height": size[1]} for i, n in zip(ids, names)],
            "annotations": annotations, "categories": categories}
    (root / "refcocog" / "instances.json").write_text(json.dumps(inst))
    write_images(root / "images" / "mscoco" / "images" / "train2014", names, size)
    return root
