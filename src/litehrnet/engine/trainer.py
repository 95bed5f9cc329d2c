"""The training loop: a GRAPH-mode train step, validation, exact-resume checkpoints, logs and curves.

`train(config)` runs a whole job and returns the final validation metrics. Outputs, all under
config.output_dir and written by rank 0 only: train.log, config.json, last.ckpt (every epoch and
every save_checkpoint_steps steps), best.ckpt (best main metric of the dataset: AP; MPII: PCKh Mean), epoch_NNN.ckpt
(every save_interval epochs), history.json, curves.png, val/ (the latest validation's results) and
metrics.json (the final validation). Checkpoints hold the bare network under its true names;
last/epoch checkpoints add the training state, so `resume` continues bit-exactly.
"""
import dataclasses
import hashlib
import json
import logging
import math
import os
import signal
import sys
import threading
import time
import warnings
from pathlib import Path

import mindspore as ms
import mindspore.dataset as mds
import numpy as np
from mindspore import nn
from tqdm import tqdm

from ..data.datasets import dataset_spec
from ..codec import codec_for
from ..data.pipeline import build_train_dataset
from ..data.validate import load_ground_truth
from ..device import set_device
from ..errors import CheckpointError
from ..evaluate import EVALUATORS, evaluate_split
from ..evaluation import STAT_NAMES
from ..evaluation.pckh import GROUPS as PCKH_GROUPS
from ..fileio import read_json, write_json_atomic
from ..codec import codec_for
from ..models.registry import create_model, heatmap_sigma, output_stride
from ..models.weights import load_weights
from .config import best_metrics, lower_is_better
from ..data.split import split_annotations
from .config import configure_transform, uses_recipe_optimizer
from .curves import draw_curves
from .examples import draw_examples
from .freeze import BackboneFreezer
from .loss import JointsMSELoss, NetWithLoss
from .optim import build_optimizer
from .schedule import build_schedule, step_lr
from .state import read_training_checkpoint, restore_optimizer, save_training_checkpoint
from .rundir import RunLock, choose_output_dir, remove_stale_temporaries

LOSS_SCALE = 1024.0  # static loss scale of mixed-precision training (GPU/Ascend)


class TrainingStopped(RuntimeError):
    """Training could not go on (a non-finite loss, a full disk); the message names the last good checkpoint."""


class TrainingInterrupted(RuntimeError):
    """SIGINT or SIGTERM: the run stopped after the current step and saved last.ckpt to resume from."""

    def __init__(self, message, signum):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum  # 130 for Ctrl-C, 143 for SIGTERM


def _distributed():
    return int(os.environ.get('MS_WORKER_NUM', '1')) > 1


def setup_context(config):
    """GRAPH mode on the device; data parallel when launched by msrun. Returns (rank, group size)."""
    set_device(config.device_target, 'graph')
    if config.amp_level != 'O0' and config.device_target == 'CPU':
        raise ValueError("--amp_level is for GPU/Ascend; CPU trains in float32 (mixed precision is slower there)")
    if int(os.environ.get('MS_WORKER_NUM', '1')) > 1:
        from mindspore.communication import get_group_size, get_rank, init
        init()
        ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True)
        return get_rank(), get_group_size()
    return 0, 1


def _logger(output_dir, rank, group_size):
    """'litehrnet.train': console (through tqdm, so bars stay intact) and, on rank 0, train.log."""
    log = logging.getLogger('litehrnet.train')
    log.setLevel(logging.DEBUG)  # DEBUG (COCOeval's table) goes to the file only
    log.propagate = False
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
    prefix = f'[rank {rank}] ' if group_size > 1 else ''

    class _TqdmHandler(logging.Handler):
        def emit(self, record):
            tqdm.write(prefix + self.format(record))

    console = _TqdmHandler(logging.INFO)
    log.addHandler(console)
    if rank == 0:
        handler = logging.FileHandler(Path(output_dir) / 'train.log')
        handler.setFormatter(logging.Formatter('%(asctime)s %(message)s'))
        log.addHandler(handler)
        logging.getLogger('litehrnet').addHandler(handler)  # the dataset's warnings too
    return log


def dataset_splits(config):
    """(train annotations, train images, val annotations, val images): the files named (train_ann, val_ann,
    img_dir) first, else the dataset's layout under data_root; the demo is generated when missing.

    With config.val_split, the train annotation file is split by image (seeded by config.seed) into
    <output_dir>/split/{train,val}.json, which the run trains and validates on."""
    spec = dataset_spec(config.dataset)
    named = dict(train=config.train_ann, val=config.val_ann)
    if spec.generate:
        root = spec.generate(config.data_root or Path(config.output_dir) / f'{spec.name}_data')
    elif config.data_root:
        root = Path(config.data_root)
        if not root.is_dir():
            raise ValueError(f"{root}: data folder not found")
    elif config.train_ann and config.val_ann and config.img_dir:
        root = None
    else:
        raise ValueError(f"--dataset {config.dataset} needs --data_root (or --train_ann, --val_ann and --img_dir)")
    if config.val_split:
        return split_train_file(spec, root, config)
    files = {split: spec.split_files(root, split, named[split], config.img_dir) for split in ('train', 'val')}
    for split, (ann, img) in files.items():
        if not ann.is_file():
            raise ValueError(f"{ann}: {'validation' if split == 'val' else 'training'} annotation file not found")
        if not img.is_dir():
            raise ValueError(f"{img}: image folder not found")
    if spec.check_val:  # e.g. MPII: PCKh needs mpii_gt_val.mat, in the order of the annotations
        spec.check_val(files['val'][0])
    return (*files['train'], *files['val'])


def split_train_file(spec, root, config):
    """The seeded val_split of the train annotation file, written to <output_dir>/split/ (same image folder)."""
    train_ann, train_img = spec.split_files(root, 'train')
    if not train_ann.is_file():
        raise ValueError(f"{train_ann}: training annotation file not found")
    train_part, val_part = split_annotations(read_json(train_ann, 'annotation file'), config.val_split, config.seed)
    folder = Path(config.output_dir) / 'split'
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / 'train.json', train_part)
    write_json_atomic(folder / 'val.json', val_part)
    return folder / 'train.json', train_img, folder / 'val.json', train_img


def dataset_meta(config, spec, train_ann):
    """The keypoint metadata file: the config's, or a generated set's own (e.g. demo_landmarks' meta.json)."""
    if config.meta or not spec.meta_file:
        return config.meta
    root = Path(config.data_root or Path(config.output_dir) / f'{spec.name}_data')
    return str(root / spec.meta_file)


def weights_fingerprint(net):
    """sha256 of the trainable parameters in name order: the ranks of a data-parallel run must agree.

    (BatchNorm running statistics are per rank, as in mmpose's distributed training; rank 0's are saved.)
    """
    digest = hashlib.sha256()
    for p in sorted(net.trainable_params(), key=lambda q: q.name):
        digest.update(p.name.encode())
        digest.update(np.ascontiguousarray(p.asnumpy()).tobytes())
    return digest.hexdigest()


def train_step_cell(net, optimizer, amp_level):
    """TrainOneStepCell over net + JointsMSELoss (wrappers keep the network's parameter names)."""
    loss_net = NetWithLoss(net, JointsMSELoss())
    if amp_level == 'O0':
        return nn.TrainOneStepCell(loss_net, optimizer)
    loss_net = ms.amp.auto_mixed_precision(loss_net, amp_level)
    return nn.TrainOneStepCell(loss_net, optimizer, sens=LOSS_SCALE)


class Trainer:
    """One training job (see the module docstring); `run()` trains and returns the final metrics."""

    def __init__(self, config):
        out, folder_note = choose_output_dir(config.output_dir, bool(config.resume), config.overwrite,
                                             _distributed())
        self.cfg = config = dataclasses.replace(config, output_dir=str(out))
        self.out = out
        self.rank, self.group_size = setup_context(config)
        self.main = self.rank == 0
        self.lock = RunLock(self.out)
        notes = [folder_note] if folder_note else []
        if self.main:  # rank 0 holds the folder for the whole job
            notes.append(self.lock.acquire())
        try:
            self._setup(config, [n for n in notes if n])
        except BaseException:
            self.lock.release()
            raise

    def _setup(self, config, notes):
        if config.early_stopping_patience and self.group_size > 1:  # only rank 0 validates: the ranks would part
            raise ValueError("early_stopping_patience is for single-device runs (only rank 0 validates)")
        self.out.mkdir(parents=True, exist_ok=True)
        train_ann, train_img, self.val_ann, self.val_img = dataset_splits(config)
        self.spec = dataset_spec(config.dataset)
        self.meta = dataset_meta(config, self.spec, train_ann)
        self.codec = codec_for(config.input_size_hw, output_stride=output_stride(config.model_type),
                               sigma=config.sigma or heatmap_sigma(config.model_type))  # targets at the head's stride
        self.train_set = self.spec.training_set(train_ann, train_img, config.input_size_hw, train=True,
                                                seed=config.seed, meta=self.meta, keypoints=config.keypoints,
                                                sigmas=config.sigmas, codec=self.codec)
        if config.augmentation is not None:
            configure_transform(self.train_set.transform, config.augmentation)
        self.metric = self.spec.metric
        self.info = self.train_set.info
        self.val_notes = []
        if self.spec.takes_meta:  # the validation file is checked now, not after an epoch
            val_gt = load_ground_truth(self.val_ann, config.keypoints, config.meta, config.sigmas)
            if val_gt.info.num_joints != self.info.num_joints:
                raise ValueError(f"{self.val_ann}: {val_gt.info.num_joints} keypoints, the training file "
                                 f"{train_ann} has {self.info.num_joints}")
            self.val_notes = val_gt.notes
        self.best_names = best_metrics(config)
        self._check_best_names()
        self.best_files = config.best_metric is not None  # named metrics also keep best_<metric>.ckpt
        ms.set_seed(config.seed)
        mds.config.set_seed(config.seed)
        with warnings.catch_warnings(record=True) as caught:  # a re-initialised head is said in the log
            warnings.simplefilter('always')
            self.net = create_model(config.model_type, num_joints=self.info.num_joints, pretrained=config.pretrained,
                                    reset_head=True, pretrained_backbone=config.pretrained_backbone)
        self.log = _logger(self.out, self.rank, self.group_size)  # train.log: once the weights fit the network
        for note in notes:
            self.log.info(note)
        if config.resume and self.main:
            for path in remove_stale_temporaries(self.out):
                self.log.info(f"removed {path}, a temporary file left by an interrupted write")
        for w in caught:
            self.log.info(str(w.message))
        if self.net.pretrained_report:  # the ImageNet backbone: what the file held that was dropped, one line
            self.log.info(self.net.pretrained_report)
        self._check_heatmap_size(config)
        self.freezer = BackboneFreezer(self.net) if config.freeze_backbone_epochs else None
        self.steps_per_epoch = None
        self.step = 0
        self.bests = [dict(value=math.inf if lower_is_better(n) else -math.inf, epoch=0) for n in self.best_names]
        self.stale = 0  # validations since the main metric last improved (early stopping)
        self.epoch_loss = [0.0, 0]  # sum, count of the current epoch
        self.history = []
        self.last_saved = None  # (path, step) of the newest checkpoint with training state
        self.final_metrics = None
        self.signal = None  # SIGINT/SIGTERM received: stop after the current step

    # --- setup -------------------------------------------------------------------------------------
    def _check_heatmap_size(self, config):
        """A configured heatmap size must be the network's own (input / output stride)."""
        h, w = config.input_size_hw
        stride = getattr(self.net, 'output_stride', 4)
        if config.heatmap_size_hw is not None and tuple(config.heatmap_size_hw) != (h // stride, w // stride):
            raise ValueError(f"heatmap_size_hw {config.heatmap_size_hw} does not match the network's output "
                             f"({h // stride}, {w // stride}) for input {h}x{w}")

    def _schedule(self):
        cfg = self.cfg
        if cfg.lr_schedule is None:
            return step_lr(cfg.lr, self.steps_per_epoch, cfg.epochs, cfg.milestones, warmup_iters=cfg.warmup_iters)
        schedule = dict(cfg.lr_schedule)
        if str(schedule.get('type', 'step')).lower() in ('step', 'multistep'):
            schedule.setdefault('milestones', cfg.milestones)
            if 'warmup_epochs' not in schedule:
                schedule.setdefault('warmup_iters', cfg.warmup_iters)
        return build_schedule(schedule, cfg.lr, self.steps_per_epoch, cfg.epochs)

    def _build(self, start_step):
        cfg = self.cfg
        self.data, sampler = build_train_dataset(self.train_set, cfg.batch_size, cfg.epochs, cfg.seed, start_step,
                                                 cfg.workers)
        self.steps_per_epoch = sampler.steps_per_epoch
        self.total_steps = sampler.total_steps
        self.lr = self._schedule()
        loss_scale = 1.0 if cfg.amp_level == 'O0' else LOSS_SCALE
        if uses_recipe_optimizer(cfg):
            self.optimizer = build_optimizer(cfg.optimizer, self.net, self.lr, loss_scale=loss_scale,
                                             freezable=self.freezer.freezable if self.freezer else None)
            if self.freezer:
                self.freezer.attach(self.optimizer)
        else:  # the official Adam (and the optimizer state of earlier runs' last.ckpt)
            self.optimizer = nn.Adam(self.net.trainable_params(), learning_rate=ms.Tensor(self.lr), eps=1e-8,
                                     loss_scale=loss_scale)
        self.train_step = train_step_cell(self.net, self.optimizer, cfg.amp_level)
        self.train_step.set_train()

    def _counters(self):
        return dict(step=self.step, seed=self.cfg.seed, batch_size=self.cfg.batch_size, num_shards=self.group_size,
                    num_samples=len(self.train_set), best_metric=float(self.best['value']), best_epoch=self.best['epoch'],
                    stale_validations=self.stale,
                    epoch_loss_sum=float(self.epoch_loss[0]), epoch_loss_count=self.epoch_loss[1],
                    **{f'best_value_{i}': float(b['value']) for i, b in enumerate(self.bests[1:], 1)},
                    **{f'best_epoch_{i}': b['epoch'] for i, b in enumerate(self.bests[1:], 1)})

    @property
    def best(self):
        """The best value and epoch of the metric that picks best.ckpt."""
        return self.bests[0]

    def _resume(self):
        """Load the weights and counters of the checkpoint to resume; returns (its path, its training state)."""
        path = self.out / 'last.ckpt' if self.cfg.resume == 'auto' else Path(self.cfg.resume)
        if not path.is_file():
            raise CheckpointError(f"{path}: no checkpoint to resume from")
        weights, state = read_training_checkpoint(path)
        expected = dict(seed=self.cfg.seed, batch_size=self.cfg.batch_size, num_shards=self.group_size,
                        num_samples=len(self.train_set))
        for key, value in expected.items():
            saved = int(state.get(key, -1))
            if saved != value:
                raise CheckpointError(f"{path}: was trained with {key} {saved}, this run has {value}; "
                                      f"resuming exactly needs the same data order")
        load_weights(self.net, weights, source=str(path))
        self.step = int(state['step'])
        self.bests[0] = dict(value=float(state[best_metric_key(state)]), epoch=int(state['best_epoch']))
        for i in range(1, len(self.bests)):
            if f'best_value_{i}' in state:
                self.bests[i] = dict(value=float(state[f'best_value_{i}']), epoch=int(state[f'best_epoch_{i}']))
        self.epoch_loss = [float(state['epoch_loss_sum']), int(state['epoch_loss_count'])]
        self.stale = int(state.get('stale_validations', 0))
        history = self.out / 'history.json'
        if history.is_file():
            self.history = [r for r in json.loads(history.read_text()) if r['step'] <= self.step]
        return path, state

    # --- outputs ------------------------------------------------------------------------------------
    def _save(self, name, with_state=True):
        if not self.main:
            return
        path = self.out / name
        try:
            if with_state:
                save_training_checkpoint(path, self.net, self.optimizer, self._counters())
                self.last_saved = (path, self.step)
            else:
                save_training_checkpoint(path, self.net)
        except OSError as e:
            raise TrainingStopped(f"could not write {path} ({e.strerror or e}): training stopped; "
                                  f"{self._last_good()}") from None

    def _last_good(self):
        if self.last_saved:
            return f"the last good checkpoint is {self.last_saved[0]} (step {self.last_saved[1]})"
        return "no checkpoint had been written yet"

    def _write_history(self):
        write_json_atomic(self.out / 'history.json', self.history, indent=1, allow_nan=True)
        m = self.metric
        draw_curves(self.out / 'curves.png', self.history, m.key, m.title, m.y_range)

    def run_validation(self, epoch):
        """The dataset's evaluation (COCO AP, MPII PCKh) of the current weights on the validation split."""
        start = time.time()
        extra = {}
        if self.spec.evaluator == 'coco':  # PCK, EPE (and MRE/SDR) beside AP, on ground-truth boxes
            extra = dict(pck_thresholds=self.cfg.pck_thresholds, sdr_thresholds=self.cfg.sdr_thresholds,
                         keypoints=self.cfg.keypoints, meta=self.cfg.meta, sigmas=self.cfg.sigmas)
        metrics = evaluate_split(self.spec, self.net, self.val_ann, self.val_img, self.cfg.input_size_hw,
                                 keypoint_info=self.info, flip_test=self.cfg.flip_test, output_dir=self.out / 'val',
                                 progress=False, **self._eval_settings(extra))
        self.train_step.set_train()
        for line in EVALUATORS[self.spec.evaluator].tables(metrics).splitlines():
            self.log.debug(line)
        self.log.info(f"epoch {epoch}: {self.metric.describe(metrics)} in {time.time() - start:.0f} s")
        return metrics

    def _end_epoch(self, epoch, seconds, images):
        cfg = self.cfg
        loss = self.epoch_loss[0] / max(1, self.epoch_loss[1])
        self.epoch_loss = [0.0, 0]
        self.log.info(f"epoch {epoch}/{cfg.epochs}: loss {loss:.6f}, lr {self.lr[self.step - 1]:.3g}, "
                      f"{images / max(seconds, 1e-9):.1f} img/s")
        if not self.main:
            return
        row = dict(epoch=epoch, step=self.step, loss=loss, lr=float(self.lr[self.step - 1]))
        if epoch % cfg.val_interval == 0 or epoch == cfg.epochs:
            metrics = self.run_validation(epoch)
            row[self.metric.key] = metrics[self.metric.key]
            row.update({k: v for k, v in metrics.items() if k.startswith(('PCK@', 'SDR@')) or k in ('EPE', 'MRE')})
            self.final_metrics = dict(metrics, epoch=epoch)
            if self._keep_best(epoch, dict(metrics, loss=loss)):
                self.stale = 0
            else:
                self.stale += 1
        self.history.append(row)
        self._save('last.ckpt')
        if cfg.save_interval and epoch % cfg.save_interval == 0:
            self._save(f'epoch_{epoch:03d}.ckpt')
        self._write_history()

    def _eval_settings(self, extra):
        """The evaluator's settings: the run's, with the dataset's own (demo_landmarks' SDR radii) where the run
        names none."""
        settings = dict(extra)
        for key, value in (self.spec.eval_settings or {}).items():
            if not (key == 'sdr_thresholds' and self.cfg.sdr_thresholds):
                settings[key] = value
        return settings

    def _check_best_names(self):
        """Refuse a best_metric the validation does not compute, at start-up."""
        cfg = self.cfg
        if self.spec.evaluator == 'coco':
            known = list(STAT_NAMES) + [f'PCK@{t:g}' for t in cfg.pck_thresholds] + ['EPE']
            sdr = cfg.sdr_thresholds or (self.spec.eval_settings or {}).get('sdr_thresholds', ())
            known += (['MRE'] + [f'SDR@{t:g}' for t in sdr]) if sdr else []
        else:
            known = list(PCKH_GROUPS) + ['Mean', 'Mean@0.1']
        known.append('loss')
        unknown = [n for n in self.best_names if n not in known]
        if unknown:
            raise ValueError(f"best_metric {unknown[0]!r} is not a validation metric of {cfg.dataset}: use one of "
                             f"{', '.join(known)}")

    def _keep_best(self, epoch, metrics):
        """best.ckpt follows the first best metric; named metrics each keep best_<metric>.ckpt."""
        improved = False
        for i, (name, best) in enumerate(zip(self.best_names, self.bests)):
            value = float(metrics.get(name, math.nan))  # no prediction at all: nothing is better
            better = value < best['value'] if lower_is_better(name) else value > best['value']
            if not better:
                continue
            self.bests[i] = dict(value=value, epoch=epoch)
            improved = improved or i == 0
            if i == 0:
                self._save('best.ckpt', with_state=False)
            if self.best_files:
                self._save(f'best_{name}.ckpt', with_state=False)
        return improved

    def _early_stop(self):
        """Whether early stopping ends the run now (patience validations without a better main metric)."""
        patience = self.cfg.early_stopping_patience
        return bool(patience) and self.stale >= patience

    def _stop(self, loss, epoch):
        raise TrainingStopped(f"loss is {loss} at epoch {epoch}, step {self.step}: training stopped; "
                              f"{self._last_good()}. Lower the learning rate or check the data")

    def _interrupted(self, epoch):
        """Save last.ckpt at the current step and stop (SIGINT / SIGTERM)."""
        self._save('last.ckpt')
        name = signal.Signals(self.signal).name
        message = f"interrupted ({name}) at epoch {epoch} step {self.step}; resume with --resume"
        self.log.info(message)
        raise TrainingInterrupted(message, self.signal)

    def _on_signal(self, signum, frame=None):
        if self.signal is not None and signum == signal.SIGINT:
            if frame is None:  # the watcher thread: end the process at once
                print("second interrupt: stopped at once, without saving", file=sys.stderr, flush=True)
                os._exit(128 + signum)
            raise KeyboardInterrupt  # a second Ctrl-C does not wait for the step
        self.signal = signum
        self.log.info(f"{signal.Signals(signum).name} received: stopping after the current step")

    def _watch_signals(self):
        """Turn SIGINT / SIGTERM into a request to stop after the current step; returns handlers to restore.

        MindSpore installs its own SIGINT handler around every graph run (it turns Ctrl-C into SIGTERM), so
        the command line blocks both signals in every thread before MindSpore starts (see src/train.py),
        and a watcher thread takes them with sigwait. Otherwise (the Python API) plain handlers are used.
        """
        stops = {signal.SIGINT, signal.SIGTERM}
        if stops <= set(signal.pthread_sigmask(signal.SIG_BLOCK, [])):
            threading.Thread(target=self._wait_signals, args=(stops,), daemon=True, name='signals').start()
            return {}
        if threading.current_thread() is not threading.main_thread():
            return {}
        return {s: signal.signal(s, self._on_signal) for s in stops}

    def _wait_signals(self, stops):
        while True:
            self._on_signal(signal.sigwait(stops))

    # --- the loop -----------------------------------------------------------------------------------
    def run(self):
        """Train from scratch, from pretrained weights, or on from a checkpoint; returns the final metrics.

        SIGINT / SIGTERM stop the run after the current step with last.ckpt saved (TrainingInterrupted).
        """
        previous = self._watch_signals()
        try:
            return self._run()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            self.lock.release()

    def _run(self):
        cfg = self.cfg
        resumed = self._resume() if cfg.resume else None
        self._build(self.step)
        if resumed:
            path, state = resumed
            restore_optimizer(self.optimizer, state, path)
            self.last_saved = (path, self.step)
            self.log.info(f"resumed from {path} at step {self.step} (epoch {self.step // self.steps_per_epoch + 1})")
        if self.main:
            # the resolved settings, accepted back by --config (which ignores the derived val_ann and num_joints);
            # resume is not written: the file reproduces the run from the start
            settings = dict(dataclasses.asdict(cfg), resume=None, val_ann=str(self.val_ann),
                            num_joints=self.info.num_joints)
            write_json_atomic(self.out / 'config.json', settings, indent=1, default=str)
            if self.net.model_type == 'custom':  # the architecture, usable as --model_type by eval/infer
                write_json_atomic(self.out / 'model.json', self.net.config, indent=1)
        self._log_start()
        batch_images = cfg.batch_size * self.group_size
        batches = self.data.create_tuple_iterator(num_epochs=1) if self.step < self.total_steps else []
        bar, epoch_start, epoch_images, tic = None, time.time(), 0, time.time()
        for image, target, weight in batches:
            epoch = self.step // self.steps_per_epoch + 1
            if bar is None:
                bar = tqdm(total=self.steps_per_epoch, initial=self.step % self.steps_per_epoch,
                           desc=f"epoch {epoch}/{cfg.epochs}", unit='step', dynamic_ncols=True,
                           disable=None if cfg.progress and self.main else True, leave=False)
            if self.freezer:
                self.freezer.set_frozen(self.freezer.frozen_at(self.step, self.steps_per_epoch,
                                                               cfg.freeze_backbone_epochs))
            loss = float(self.train_step(image, target, weight).asnumpy())
            self.step += 1
            if not math.isfinite(loss):
                bar.close()
                self._stop(loss, epoch)
            toc = time.time()
            self.epoch_loss[0] += loss
            self.epoch_loss[1] += 1
            epoch_images += batch_images
            bar.set_postfix(loss=f"{self.epoch_loss[0] / self.epoch_loss[1]:.3g}", lr=f"{self.lr[self.step - 1]:.2e}",
                            img_s=f"{batch_images / max(toc - tic, 1e-9):.1f}", refresh=False)
            bar.update(1)
            if self.signal is not None:
                bar.close()
                self._interrupted(epoch)
            if self.step % self.steps_per_epoch == 0:
                bar.close()
                bar = None
                self._end_epoch(epoch, time.time() - epoch_start, epoch_images)
                if self._early_stop():
                    self.log.info(f"early stopping at epoch {epoch}: no better validation {self.metric.label} in "
                                  f"{self.stale} validations (best {self.best['value']:{self.metric.fmt}} at epoch "
                                  f"{self.best['epoch']})")
                    break
                if self.signal is not None and self.step < self.total_steps:
                    self._interrupted(epoch)
                epoch_start, epoch_images = time.time(), 0
            elif cfg.save_checkpoint_steps and self.step % cfg.save_checkpoint_steps == 0:
                self._save('last.ckpt')
            tic = time.time()
        return self._finish()

    def _log_start(self):
        cfg, ts = self.cfg, self.train_set
        for note in self.info.notes:
            self.log.info(f"keypoint set: {note}")
        for note in dict.fromkeys(self.train_set.annotation_notes + self.val_notes
                                  if hasattr(self.train_set, 'annotation_notes') else []):
            self.log.info(f"annotations: {note}")
        if getattr(self.train_set, 'num_crowd', 0):
            self.log.info(f"train: {self.train_set.num_crowd} crowd annotations left out")
        self.log.info(f"train: {len(ts)} persons ({ts.ann_file}), {self.steps_per_epoch} steps/epoch of "
                      f"{cfg.batch_size} x {self.group_size} device(s), {cfg.epochs} epochs, input "
                      f"{cfg.input_size_hw[0]}x{cfg.input_size_hw[1]}, model {self.net.model_type}, "
                      f"heatmaps {self.codec.heatmap_size_hw[0]}x{self.codec.heatmap_size_hw[1]} (stride "
                      f"{self.net.output_stride}, sigma {self.codec.sigma}), output {self.out}")
        if self.step < self.total_steps:
            self.log.info("compiling the training graph (the first step takes a while)...")

    def _finish(self):
        if self.main and self.final_metrics is None:  # resumed after the last epoch: validate once more
            self.final_metrics = dict(self.run_validation(self.cfg.epochs), epoch=self.cfg.epochs)
        skipped = self.train_set.skip_summary()
        if skipped:
            self.log.warning(skipped)
        self.log.info(f"weights fingerprint (trainable, sha256): {weights_fingerprint(self.net)}")
        if not self.main:
            return None
        m = self.metric
        metrics = dict(self.final_metrics, **{f'best_{n}': b['value'] for n, b in zip(self.best_names, self.bests)},
                       best_metric=self.best_names[0], best_epoch=self.best['epoch'],
                       **{f'best_{n}_epoch': b['epoch'] for n, b in zip(self.best_names, self.bests)})
        write_json_atomic(self.out / 'metrics.json', metrics, indent=2, default=str, allow_nan=True)
        examples = draw_examples(self.out / 'val' / m.results, self.val_ann, self.val_img,
                                 self.out / 'examples', self.info.skeleton)
        self.log.info(f"{len(examples)} example pictures of the last validation in {self.out / 'examples'}")
        self.log.info(f"final validation {m.label} {metrics[m.key]:{m.fmt}} at epoch {metrics['epoch']}; best "
                      f"{self.best_names[0]} {self.best['value']:.4g} at epoch {self.best['epoch']}; metrics in "
                      f"{self.out / 'metrics.json'}")
        return metrics


def best_metric_key(state):
    """The training-state key of the best main metric: 'best_metric', or 'best_ap' in checkpoints written
    before it was renamed (it held PCKh on MPII too)."""
    return 'best_metric' if 'best_metric' in state else 'best_ap'


def train(config):
    """Run one training job as `config` says; returns the final validation metrics (rank 0) or None."""
    return Trainer(config).run()
