"""Training settings: the official Lite-HRNet COCO schedule as defaults, the MPII and demo presets, and
the official HRNet recipe for the HRNet family.

`make_config(dataset, **overrides)` starts from the defaults, applies the dataset's preset, then the
HRNet recipe when the model is an HRNet (except on the demo set, whose small preset stays), then
every override that is not None (the command line passes None for flags the user did not give).
"""
import dataclasses
from dataclasses import dataclass

from ..data.datasets import DATASETS, dataset_spec
from ..device import DEVICES
from ..models.hrnet import HRNetPoseNet
from ..models.registry import check_input_size, model_family
from .schedule import scaled_milestones

AMP_LEVELS = ('O0', 'O2', 'O3')  # O1 needs MindSpore's source rewriter, which cannot parse this network


@dataclass
class TrainConfig:
    """Everything a training run depends on; the defaults are the official Lite-HRNet COCO settings."""

    model_type: object = 'litehrnet_18'  # name, alias, architecture dict or .json/.yaml file
    input_size_hw: tuple = DATASETS['coco'].input_size_hw
    dataset: str = 'coco'                # a key of data.datasets.DATASETS (layouts, metric, ...)
    data_root: str = None
    train_ann: str = None                # annotation files and image folder named directly (over the layout)
    val_ann: str = None
    img_dir: str = None
    keypoints: str = None                # COCO-format: a built-in keypoint set by name (else recognised)
    meta: str = None                     # COCO-format: keypoint metadata (.json/.yaml) over the set's values
    sigmas: tuple = None                 # COCO-format: OKS sigmas, one per joint
    best_metric: object = None           # metric (or list: the first picks best.ckpt, each has best_<m>.ckpt);
                                         # None: the dataset's (AP; MPII: PCKh Mean)
    pck_thresholds: tuple = (0.05, 0.1, 0.2)  # COCO-format validation: PCK@t beside AP (with EPE)
    sdr_thresholds: tuple = ()           # ... and MRE, SDR@t (pixels)
    output_dir: str = None               # None: 'output', or the next free 'output-N' when it holds a run
    overwrite: bool = False              # replace the run already in output_dir
    epochs: int = 210
    batch_size: int = 64                 # per device
    lr: float = 2e-3
    milestones: tuple = (170, 200)
    warmup_iters: int = 500
    val_interval: int = 10               # epochs; the last epoch is always validated
    save_interval: int = 10              # epochs between periodic checkpoints (0: none)
    save_checkpoint_steps: int = 0       # also refresh last.ckpt every N steps (0: at epoch ends only)
    flip_test: bool = True               # validation with flip test, as mmpose
    seed: int = 0
    workers: int = 1
    pretrained: str = None               # start from these weights (another joint count: head re-initialised)
    pretrained_backbone: str = None      # HRNet family: ImageNet backbone file (official/timm/mindcv)
    resume: str = None                   # continue a run from a checkpoint with training state
    device_target: str = 'CPU'
    amp_level: str = 'O0'
    progress: bool = True
    # --- recipe settings (config files; see litehrnet/configs/) ------------------------------------
    optimizer: dict = None               # None: the official nn.Adam; {type: adam|adamw|sgd, weight_decay, ...}
    lr_schedule: dict = None             # None: step at `milestones` after `warmup_iters`; {type: step|multistep|cosine, ...}
    freeze_backbone_epochs: int = 0      # backbone frozen (no update, BatchNorm statistics kept) for these epochs
    augmentation: dict = None            # flip, rotation, rotation_prob, scale, half_body, brightness, contrast
    sigma: float = None                  # heatmap Gaussian sigma in heatmap pixels (None: 2, or 3 from 72 wide)
    heatmap_size_hw: tuple = None        # None: input / the network's output stride; must match the network
    early_stopping_patience: int = 0     # stop after this many validations without a better main metric (0: off)
    val_split: float = 0.0               # > 0: validate on this seeded share of the train file's images


AUGMENTATION_DEFAULTS = dict(flip=True, rotation=30.0, rotation_prob=0.6, scale=(0.75, 1.25), half_body=True,
                             brightness=0.0, contrast=0.0)


# A narrow Lite-HRNet (one module per stage, one block each, widths 16-128) that learns the demo in
# minutes on a CPU; the narrower 8-64 version learns about half as well in the same time.
DEMO_MODEL = dict(stem_channels=16, stages=[
    dict(num_modules=1, num_branches=b, num_blocks=1, num_channels=[16, 32, 64, 128][:b]) for b in (2, 3, 4)])
DEMO_EPOCHS = 10
# The vertebra recipe scaled down for the landmark demo (256x128 spines, 224 train / 40 val images): the demo's
# narrow Lite-HRNet, AdamW 2e-3 wd 0.01, cosine with 1 warm-up epoch to 2e-5, no flip (laterality), rotation +-10,
# scale 0.9-1.1, brightness/contrast 0.1, no half-body; validation MRE / SDR at 2, 4, 8 px.
LANDMARK_EPOCHS = 6
LANDMARK_PRESET = dict(
    model_type=DEMO_MODEL, epochs=LANDMARK_EPOCHS, batch_size=8, lr=2e-3, val_interval=2, save_interval=0,
    optimizer=dict(type='adamw', weight_decay=0.01), lr_schedule=dict(type='cosine', warmup_epochs=1, min_lr=2e-5),
    augmentation=dict(flip=False, rotation=10, scale=(0.9, 1.1), half_body=False, brightness=0.1, contrast=0.1),
    flip_test=False)

PRESETS = {  # training settings of a dataset beyond the table's (its input size comes from data.datasets)
    'coco': {},
    'custom': {},
    # The official MPII config: 256x256 (heatmap 64x64, sigma 2), batch 32 per device, validation every 5.
    'mpii': dict(batch_size=32, val_interval=5),
    # About 3 minutes on 2 CPU cores (~2,000 persons x 10 epochs at ~140 img/s): validation AP ~0.7.
    'demo': dict(model_type=DEMO_MODEL, epochs=DEMO_EPOCHS, batch_size=16, lr=4e-3,
                 warmup_iters=100, milestones=scaled_milestones(DEMO_EPOCHS), val_interval=2, save_interval=0),
    'demo_landmarks': LANDMARK_PRESET,
}
assert set(PRESETS) == set(DATASETS)

# The official HRNet recipe (deep-high-resolution-net.pytorch, experiments/{coco,mpii}/hrnet/*.yaml): Adam 1e-3,
# 210 epochs, x0.1 at 170 and 200, batch 32 per device, no warm-up (mmpose adds a 500-iteration linear one:
# --warmup_iters 500). Its sigma, 2 (3 at 384x288), is codec.default_sigma; MPII W32 is 256x256 (the table's).
HRNET_RECIPE = dict(lr=1e-3, epochs=210, milestones=(170, 200), batch_size=32, warmup_iters=0)
def augmentation_settings(augmentation):
    """The full augmentation dict (defaults: mmpose's top-down training) with `augmentation`'s keys applied;
    ValueError naming an unknown key or a bad value. scale is a range [lo, hi] symmetric about 1."""
    aug = dict(AUGMENTATION_DEFAULTS)
    unknown = sorted(set(augmentation or {}) - set(aug))
    if unknown:
        raise ValueError(f"unknown augmentation key(s): {', '.join(unknown)} (allowed: {', '.join(aug)})")
    aug.update(augmentation or {})
    lo, hi = (float(v) for v in aug['scale'])
    if not (0 < lo <= 1 <= hi and abs((1 - lo) - (hi - 1)) < 1e-6):
        raise ValueError(f"augmentation scale must be a range [lo, hi] symmetric about 1, got {aug['scale']}")
    for name in ('rotation', 'brightness', 'contrast'):
        if float(aug[name]) < 0:
            raise ValueError(f"augmentation {name} must be >= 0, got {aug[name]}")
    if not 0 <= float(aug['rotation_prob']) <= 1:
        raise ValueError(f"augmentation rotation_prob must be in [0, 1], got {aug['rotation_prob']}")
    return aug


def configure_transform(transform, augmentation):
    """Set a data.transforms.TopDownTrainTransform's switches from an augmentation dict (see above)."""
    aug = augmentation_settings(augmentation)
    transform.flip_prob = 0.5 if aug['flip'] else 0.0
    if not aug['half_body']:
        transform.half_body_prob = 0.0
    transform.rot_factor = float(aug['rotation'])
    transform.rot_prob = float(aug['rotation_prob'])
    transform.scale_factor = 1.0 - float(aug['scale'][0])
    transform.brightness = float(aug['brightness'])
    transform.contrast = float(aug['contrast'])
    return transform


def uses_recipe_optimizer(config):
    """Whether the run needs engine/optim's RecipeOptimizer: AdamW, SGD, weight decay, other Adam betas/eps or a
    frozen backbone. Otherwise MindSpore's nn.Adam trains, as the official schedule (and old last.ckpt) has it."""
    opt = dict(config.optimizer or {})
    kind = str(opt.pop('type', 'adam')).lower()
    plain = (kind == 'adam' and not opt.get('weight_decay') and tuple(opt.get('betas', (0.9, 0.999))) == (0.9, 0.999)
             and float(opt.get('eps', 1e-8)) == 1e-8)
    return not plain or config.freeze_backbone_epochs > 0


def make_config(dataset='coco', **overrides):
    """The settings of a run on `dataset`: defaults, then the dataset's preset, then the non-None overrides."""
    spec = dataset_spec(dataset)
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TypeError(f"unknown training settings: {', '.join(unknown)}")
    values = dict(PRESETS[dataset], dataset=dataset, input_size_hw=spec.input_size_hw)
    model_type = overrides.get('model_type') or values.get('model_type', TrainConfig.model_type)
    if dataset != 'demo' and model_family(model_type) is HRNetPoseNet:
        values.update(HRNET_RECIPE)
    epochs_given = overrides.get('epochs') is not None
    if epochs_given and overrides.get('milestones') is None:
        values['milestones'] = scaled_milestones(overrides['epochs'])
    values.update({k: v for k, v in overrides.items() if v is not None})
    for name in ('input_size_hw', 'milestones', 'heatmap_size_hw', 'best_metric', 'sdr_thresholds', 'pck_thresholds',
                 'sigmas'):
        if isinstance(values.get(name), list):
            values[name] = tuple(values[name])
    return check_config(TrainConfig(**values))


LOWER_IS_BETTER = ('loss', 'EPE', 'MRE')


def best_metrics(config):
    """The metrics that pick checkpoints: config.best_metric as a list (one name or several; the first
    picks best.ckpt), or the dataset's main metric. Names are validation metrics (AP, AP50, AR, PCK@0.1,
    EPE, MRE, SDR@2, Mean, ...) or loss."""
    value = config.best_metric
    if value is None:
        return [dataset_spec(config.dataset).metric.key]
    names = [value] if isinstance(value, str) else list(value)
    names = [n.strip() for name in names for n in str(name).split(',') if n.strip()]
    if not names:
        raise ValueError("best_metric names no metric")
    return names


def lower_is_better(metric):
    """Whether a smaller value of the metric is better (loss, EPE, MRE)."""
    return metric in LOWER_IS_BETTER


def check_config(config):
    """Refuse settings that cannot train (one-line ValueError) before anything heavy starts."""
    check_input_size(config.model_type, *config.input_size_hw)
    positive = dict(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                    val_interval=config.val_interval, workers=config.workers)
    for name, value in positive.items():
        if not value > 0:
            raise ValueError(f"{name} must be positive, got {value}")
    for name in ('warmup_iters', 'save_interval', 'save_checkpoint_steps'):
        if getattr(config, name) < 0:
            raise ValueError(f"{name} must be >= 0, got {getattr(config, name)}")
    if config.device_target not in DEVICES:
        raise ValueError(f"device_target must be one of {', '.join(DEVICES)}")
    if config.amp_level not in AMP_LEVELS:
        raise ValueError(f"amp_level must be one of {', '.join(AMP_LEVELS)}")
    dataset_spec(config.dataset).check_keypoint_options(config.keypoints, config.meta, config.sigmas)
    best_metrics(config)
    if config.resume and (config.pretrained or config.pretrained_backbone):
        raise ValueError("give either resume (continue a run) or pretrained / pretrained_backbone (start from "
                         "weights), not both")
    if config.pretrained and config.pretrained_backbone:
        raise ValueError("give pretrained (the whole network) or pretrained_backbone (an ImageNet backbone), not both")
    if config.pretrained_backbone and model_family(config.model_type) is not HRNetPoseNet:
        raise ValueError("pretrained_backbone is for the HRNet family (hrnet_w32, hrnet_w48, light_hrnet, HRNet "
                         "configs)")
    for name in ('freeze_backbone_epochs', 'early_stopping_patience'):
        if getattr(config, name) < 0:
            raise ValueError(f"{name} must be >= 0, got {getattr(config, name)}")
    if config.freeze_backbone_epochs >= config.epochs:
        raise ValueError(f"freeze_backbone_epochs ({config.freeze_backbone_epochs}) must be below epochs "
                         f"({config.epochs})")
    if not 0.0 <= float(config.val_split) < 1.0:
        raise ValueError(f"val_split must be in [0, 1), got {config.val_split}")
    if config.sigma is not None and not config.sigma > 0:
        raise ValueError(f"sigma must be positive, got {config.sigma}")
    augmentation_settings(config.augmentation)
    for name in ('optimizer', 'lr_schedule'):
        if getattr(config, name) is not None and not isinstance(getattr(config, name), dict):
            raise ValueError(f"{name} must be a mapping with a 'type', got {getattr(config, name)!r}")
    return config
