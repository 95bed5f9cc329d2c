"""The dataset table: everything the project knows about each dataset, in one place.

For each dataset: the file layout of its splits under --data_root, the training set class, the default
input size, the keypoint set, the metric that picks best.ckpt, and the evaluator (a key of
`litehrnet.evaluate.EVALUATORS`). train.py, eval.py and the trainer read it; nothing else tests a
dataset's name.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from ..keypoints import MPII_16
from .coco import CocoKeypointDataset
from .demo import ensure_demo_dataset
from .demo_landmarks import ensure_landmark_dataset
from .mpii import MpiiKeypointDataset, default_gt_mat, load_mpii_annotations
from .validate import apply_keypoint_options, load_ground_truth


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
    dataset_class: type        # (ann_file, img_root, input_size_hw, train=, seed=, codec=, **meta) -> samples
    input_size_hw: tuple       # default network input (H, W)
    keypoints: Optional[str]   # a built-in keypoint set, or None: described by the annotation file
    metric: MainMetric
    evaluator: str             # key of litehrnet.evaluate.EVALUATORS
    takes_meta: bool = False   # COCO-format: accepts --keypoints, --meta and --sigmas
    generate: Optional[Callable] = None  # root -> root: makes the data when it is missing (demo)
    check_val: Optional[Callable] = None  # val annotation file -> None; raises when unusable for evaluation
    eval_settings: Optional[dict] = None  # extra evaluator settings of validation (e.g. sdr_thresholds)
    meta_file: Optional[str] = None  # generated sets: keypoint metadata beside the annotations (under the root)

    def split_files(self, data_root, split, ann_file=None, img_dir=None):
        """(annotation file, image folder) of a split: the files named (--train_ann/--val_ann, --img_dir)
        first, else the layout under data_root (None where neither says)."""
        ann, img = self.splits[split]
        root = Path(data_root) if data_root else None
        return (Path(ann_file) if ann_file else root / ann if root else None,
                Path(img_dir) if img_dir else root / img if root else None)

    def check_keypoint_options(self, keypoints=None, meta=None, sigmas=None):
        """Refuse --keypoints/--meta/--sigmas for a dataset with a fixed keypoint set (MPII)."""
        given = [f"--{n}" for n, v in (('keypoints', keypoints), ('meta', meta), ('sigmas', sigmas)) if v]
        if given and not self.takes_meta:
            raise ValueError(f"{' '.join(given)}: {self.name} uses its built-in keypoint set "
                             f"(these options are for COCO-format sets)")

    def keypoint_info(self, ann_file=None, meta=None, keypoints=None, sigmas=None):
        """The keypoint set: a COCO-format annotation file's (recognised, or described by its category),
        --keypoints NAME, --meta and --sigmas applied; MPII's is built in."""
        self.check_keypoint_options(keypoints, meta, sigmas)
        if not self.takes_meta:
            return MPII_16
        if ann_file:
            return load_ground_truth(ann_file, keypoints, meta, sigmas).info
        return apply_keypoint_options(keypoints or self.keypoints, meta, sigmas)

    def training_set(self, ann_file, img_root, input_size_hw, train=True, seed=0, meta=None, keypoints=None,
                     sigmas=None, codec=None):
        """The training (or validation-sample) dataset object of a split; `codec` makes its targets."""
        self.check_keypoint_options(keypoints, meta, sigmas)
        extra = dict(meta=meta, keypoints=keypoints, sigmas=sigmas) if self.takes_meta else {}
        return self.dataset_class(ann_file, img_root, input_size_hw, train=train, seed=seed, codec=codec, **extra)


# The built-in keypoint sets (litehrnet.keypoint_sets: CrowdPose, AIC, OCHuman, ATRW, AnimalPose, AP-10K,
# MPII-TRB, COCO-WholeBody's body, ...) are read in the custom layout below, or from annotation files and an
# image folder named on the command line (--train_ann/--val_ann/--ann_file, --img_dir); the set is
# recognised from the file's keypoint names, or named with --keypoints.
COCO_FORMAT_SPLITS = {'train': ('annotations/train.json', 'images'), 'val': ('annotations/val.json', 'images')}

DATASETS = {
    'coco': DatasetSpec(
        'coco', {'train': ('annotations/person_keypoints_train2017.json', 'train2017'),
                 'val': ('annotations/person_keypoints_val2017.json', 'val2017')},
        CocoKeypointDataset, (256, 192), 'coco', AP, 'coco', takes_meta=True),
    # mmpose's layout; PCKh also needs annotations/mpii_gt_val.mat beside the validation annotations
    'mpii': DatasetSpec(
        'mpii', {'train': ('annotations/mpii_train.json', 'images'), 'val': ('annotations/mpii_val.json', 'images')},
        MpiiKeypointDataset, (256, 256), 'mpii', PCKH_MEAN, 'mpii',
        check_val=lambda ann: load_mpii_annotations(ann, default_gt_mat(ann))),
    'custom': DatasetSpec('custom', COCO_FORMAT_SPLITS, CocoKeypointDataset, (256, 192), None, AP, 'coco',
                          takes_meta=True),
    'demo': DatasetSpec('demo', COCO_FORMAT_SPLITS, CocoKeypointDataset, (128, 96), 'coco', AP, 'coco',
                        takes_meta=True, generate=ensure_demo_dataset),
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
