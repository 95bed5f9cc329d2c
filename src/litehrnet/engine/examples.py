"""Example pictures at the end of training: the last validation's predictions drawn on a few images.

Drawn from the validation results file, so no second network graph is compiled in the training process.
"""
from collections import defaultdict
from pathlib import Path

import cv2

from ..drawing import draw_poses
from ..fileio import atomic_path, read_json


def draw_examples(results_json, ann_file, img_dir, out_dir, skeleton, max_images=8, kpt_thr=0.3):
    """Write up to ``max_images`` validation images with their predicted poses; returns the paths."""
    results = read_json(results_json, "validation results file")
    persons = defaultdict(list)
    for r in results:
        persons[r["image_id"]].append({"keypoints": r["keypoints"], "box_score": None})
    images = [im for im in read_json(ann_file, "annotation file")["images"] if im["id"] in persons]
    out_dir = Path(out_dir)
    written = []
    for im in images[:max_images]:
        bgr = cv2.imread(str(Path(img_dir) / im["file_name"]), cv2.IMREAD_COLOR)
        if bgr is None:
            continue
        drawn = draw_poses(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), persons[im["id"]], skeleton, kpt_thr=kpt_thr)
        path = out_dir / (Path(im["file_name"]).stem + ".jpg")
        with atomic_path(path, suffix=".jpg") as tmp:  # OpenCV picks the format from the extension
            if not cv2.imwrite(tmp, cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR)):
                raise OSError(f"{path}: could not write the example picture")
        written.append(str(path))
    return written
