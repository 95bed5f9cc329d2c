"""Example pictures at the end of training: the last validation's predictions drawn on a few images.

Drawn from the validation results file, so no second network graph is compiled in the training process.
COCO results name images by `image_id` (looked up in the annotation file); MPII results by file `image`.
"""
from collections import defaultdict
from pathlib import Path

import cv2

from ..drawing import draw_poses
from ..fileio import atomic_path, read_json


def _persons_by_file(results, ann_file):
    """{image file name: [person]} in the annotation file's image order (COCO) or the results' order (MPII)."""
    persons = defaultdict(list)
    if all("image" in r for r in results):  # MPII: results_mpii.json
        for r in results:
            persons[r["image"]].append({"keypoints": r["keypoints"], "box_score": None})
        return persons
    by_id = defaultdict(list)
    for r in results:
        by_id[r["image_id"]].append({"keypoints": r["keypoints"], "box_score": None})
    for im in read_json(ann_file, "annotation file")["images"]:
        if im["id"] in by_id:
            persons[im["file_name"]] = by_id[im["id"]]
    return persons


def draw_examples(results_json, ann_file, img_dir, out_dir, skeleton, max_images=8, kpt_thr=0.3):
    """Write up to ``max_images`` validation images with their predicted poses; returns the paths."""
    persons = _persons_by_file(read_json(results_json, "validation results file"), ann_file)
    out_dir = Path(out_dir)
    written = []
    for file_name in list(persons)[:max_images]:
        bgr = cv2.imread(str(Path(img_dir) / file_name), cv2.IMREAD_COLOR)
        if bgr is None:
            continue
        drawn = draw_poses(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), persons[file_name], skeleton, kpt_thr=kpt_thr)
        path = out_dir / (Path(file_name).stem + ".jpg")
        with atomic_path(path, suffix=".jpg") as tmp:  # OpenCV picks the format from the extension
            if not cv2.imwrite(tmp, cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR)):
                raise OSError(f"{path}: could not write the example picture")
        written.append(str(path))
    return written
