"""A seeded train/val split of one COCO-format annotation file, by image (a person never straddles the split)."""
import copy

import numpy as np


def split_annotations(coco_dict, val_fraction, seed=0):
    """(train_dict, val_dict): the images of `coco_dict` split at random, each with its own annotations.

    round(val_fraction x number of images) images go to validation (at least one, and at least one
    left for training, when there are two or more images); which ones follows from `seed` alone. Every
    other top-level key (info, licenses, categories) is copied into both. The input is not modified.
    """
    if not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    images = list(coco_dict.get('images', []))
    if len(images) < 2:
        raise ValueError(f"splitting needs at least 2 images, the annotation file has {len(images)}")
    ids = [img['id'] for img in images]
    if len(set(ids)) != len(ids):
        raise ValueError("the annotation file repeats image ids, so it cannot be split by image")
    num_val = min(max(int(round(val_fraction * len(images))), 1), len(images) - 1)
    order = np.random.default_rng(seed).permutation(len(images))
    val_ids = {ids[i] for i in order[:num_val]}
    rest = {k: copy.deepcopy(v) for k, v in coco_dict.items() if k not in ('images', 'annotations')}
    parts = []
    for in_val in (False, True):
        keep = [img for img in images if (img['id'] in val_ids) == in_val]  # the file's own order
        anns = [a for a in coco_dict.get('annotations', []) if (a['image_id'] in val_ids) == in_val]
        parts.append(dict(copy.deepcopy(rest), images=copy.deepcopy(keep), annotations=copy.deepcopy(anns)))
    return parts[0], parts[1]
