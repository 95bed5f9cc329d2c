"""The dataset table: everything the project knows about each dataset, in one place.

For each dataset: the file layout of its splits under --data_root, the training set class, the default
input size, the keypoint set, the metric that picks best.ckpt, and the evaluator (a key of
`litehrnet.evaluate.EVALUATORS`). train.py, eval.py and the trainer read it; nothing else tests a
dataset's name.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from ..keypoints import get_keypoint_info
from .coco import CocoKeypointDataset
from .demo import ensure_demo_dataset
from .demo_landmarks import ensure_landmark_dataset
from .mpii import MpiiKeypointDataset, default_gt_mat, load_mpii_annotations


@dataclass(frozen=True)
class MainMetric:
    """The validation number that picks best.ckpt: its key, log label, curve title and range, format."""

    key: str       # in the evaluation's metrics (and history rows)
    label: str
    title: str
    y_range: tuple
    fmt: str
    results: str   # the evaluation's results file in its output folder, drawn as example pictures
    describe: Callable  # metrics -> "validation ... on N ..." for the training log
    higher_is_better: bool = True


AP = MainMetric('AP', 'AP', 'validation AP', (0.0, 1.0), '.4f', 'results_keypoints.json',
                lambda m: f"validation AP {m['AP']:.4f} (AP50 {m['AP50']:.4f}, AR {m['AR']:.4f}) on "
                          f"{m['num_boxes']} ground-truth boxes")
PCKH_MEAN = MainMetric('Mean', 'PCKh Mean', 'validation PCKh@0.5 Mean (%)', (0.0, 100.0), '.2f', 'results_mpii.json',
                       lambda m: f"validation PCKh@0.5 Mean {m['Mean']:.2f} (Mean@0.1 {m['Mean@0.1']:.2f}) on "
                                 f"{m['num_people']} annotated people")

MRE = MainMetric('MRE', 'MRE (px)', 'validation mean radial error (px)', (0.0, 20.0), '.2f', 'results_keypoints.json',
                 lambda m: f"validation MRE {m['MRE']:.2f} px (" + ', '.join(
                     f"{k} {m[k]:.3f}" for k in m if k.startswith('SDR@')) + f") on {m['num_boxes']} boxes",
                 higher_is_better=False)


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset: layout, training set class, default input size, keypoint set, main metric, evaluator."""

    name: str
    splits: dict               # split ('train' / 'val') -> (annotation file, image folder) under the root
    dataset_class: type        # (ann_file, img_root, input_size_hw, train=, seed=, **meta) -> samples
    input_size_hw: tuple       # default network input (H, W)
    keypoints: Optional[str]   # a built-in keypoint set, or None: described by the annotation file
    metric: MainMetric
    evaluator: str             # key of litehrnet.evaluate.EVALUATORS
    takes_meta: bool = False   # accepts --meta (keypoint metadata of a custom set)
    generate: Optional[Callable] = None  # root -> root: makes the data when it is missing (demo)
    check_val: Optional[Callable] = None  # val annotation file -> None; raises when unusable for evaluation
    eval_settings: Optional[dict] = None  # extra evaluator settings of validation (e.g. sdr_thresholds)
    meta_file: Optional[str] = None  # generated sets: keypoint metadata beside the annotations (under the root)

    def split_files(self, data_root, split):
        """(annotation file, image folder) of a split under data_root."""
        ann, img = self.splits[split]
        return Path(data_root) / ann, Path(data_root) / img

    def keypoint_info(self, ann_file=None, meta=None):
        """The keypoint set: built in, or read from the annotation file's category (with meta)."""
        if self.keypoints:
            return get_keypoint_info(self.keypoints)
        return get_keypoint_info(str(ann_file), meta) if ann_file else get_keypoint_info('coco')

    def training_set(self, ann_file, img_root, input_size_hw, train=True, seed=0, meta=None):
        """The training (or validation-sample) dataset object of a split."""
        extra = dict(meta=meta) if self.takes_meta else {}
        return self.dataset_class(ann_file, img_root, input_size_hw, train=train, seed=seed, **extra)


COCO_FORMAT_SPLITS = {'train': ('annotations/train.json', 'images'), 'val': ('annotations/val.json', 'images')}

DATASETS = {
    'coco': DatasetSpec(
        'coco', {'train': ('annotations/person_keypoints_train2017.json', 'train2017'),
                 'val': ('annotations/person_keypoints_val2017.json', 'val2017')},
        CocoKeypointDataset, (256, 192), 'coco', AP, 'coco'),
    # mmpose's layout; PCKh also needs annotations/mpii_gt_val.mat beside the validation annotations
    'mpii': DatasetSpec(
        'mpii', {'train': ('annotations/mpii_train.json', 'images'), 'val': ('annotations/mpii_val.json', 'images')},
        MpiiKeypointDataset, (256, 256), 'mpii', PCKH_MEAN, 'mpii',
        check_val=lambda ann: load_mpii_annotations(ann, default_gt_mat(ann))),
    'custom': DatasetSpec('custom', COCO_FORMAT_SPLITS, CocoKeypointDataset, (256, 192), None, AP, 'coco',
                          takes_meta=True),
    'demo': DatasetSpec('demo', COCO_FORMAT_SPLITS, CocoKeypointDataset, (128, 96), 'coco', AP, 'coco',
                        generate=ensure_demo_dataset),
    # synthetic X-ray-like spines, 40 landmarks (10 vertebrae x 4 corners), no flip pairs: MRE / SDR in pixels
    'demo_landmarks': DatasetSpec('demo_landmarks', COCO_FORMAT_SPLITS, CocoKeypointDataset, (256, 128), None, MRE,
                                  'coco', takes_meta=True, generate=ensure_landmark_dataset,
                                  eval_settings=dict(sdr_thresholds=(2, 4, 8), pck_thresholds=()),
                                  meta_file='meta.json'),
}


def dataset_spec(name):
    """The table's entry for a dataset name; ValueError naming the known ones."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}: use one of {', '.join(DATASETS)}")
    return DATASETS[name]
