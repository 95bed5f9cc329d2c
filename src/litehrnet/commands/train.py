"""Train Lite-HRNet on COCO, MPII, the built-in demo set or a custom COCO-format keypoint set (the command line: src/train.py, litehrnet-train).

    python src/train.py --dataset demo          # minutes on a CPU: a generated stick-figure set, AP rises
    python src/train.py --model_type litehrnet_18 --target_res 256x192 --dataset coco --data_root DIR
    python src/train.py --model_type litehrnet_18 --dataset mpii --data_root DIR   # 256x256, PCKh
    python src/train.py --dataset custom --data_root DIR --pretrained litehrnet_18_coco_256x192
    python src/train.py ... --resume            # continue <checkpoint_path>/last.ckpt exactly
    python src/train.py --config vertebrae_hrnet_w32_512x512 --data_root DIR   # a shipped recipe (litehrnet/configs)
    python src/train.py --config output/config.json --checkpoint_path output-2  # reproduce a run

Defaults are the official schedule (Adam 2e-3, 500-step warm-up, x0.1 at epochs 170 and 200 of 210,
batch 64, validation every 10 epochs); mpii: 256x256, batch 32, validation (PCKh) every 5 epochs;
--dataset demo has its own small preset. An HRNet (hrnet_w32, hrnet_w48, light_hrnet, HRNet configs)
trains with the official HRNet recipe: Adam 1e-3, batch 32, no warm-up (mmpose's: --warmup_iters 500);
--pretrained_backbone FILE starts it from ImageNet weights. Layouts under --data_root: coco:
annotations/person_keypoints_{train,val}2017.json, train2017/, val2017/; mpii (mmpose's):
annotations/mpii_{train,val}.json, annotations/mpii_gt_val.mat, images/; custom (and demo):
annotations/{train,val}.json, images/. Bad input exits with code 2 and one line on stderr; a NaN/Inf
loss or a full disk stops training with exit code 1, keeping the last good checkpoint; Ctrl-C (SIGINT)
and SIGTERM stop after the current step with last.ckpt saved, exit code 130 / 143.
"""
import sys
from pathlib import Path

from . import program_name
from ..checkpoint.io import read_tensors
from ..cli import ArgParser, add_keypoint_flags, number_list, resolution, run_main, str2bool
from ..data.datasets import DATASETS
from ..device import DEVICES, select_device
from ..engine.config import AMP_LEVELS, make_config
from ..engine.rundir import DEFAULT_OUTPUT_DIR
from ..engine.trainer import TrainingInterrupted, TrainingStopped, train
from ..experiment import add_config_flags, parse_with_config
from ..models.hrnet_config import light_hrnet_config
from ..models.registry import check_model_type, resolve_checkpoint

LIGHT_FLAGS = ('n_channels', 'num_stages', 'num_branches', 'num_blocks')


def parse_args(argv=None, prog='train.py'):
    p = ArgParser(prog=prog, description=__doc__.splitlines()[0])
    add_config_flags(p)
    p.add_argument('--model_type', help='litehrnet_18 (coco/mpii/custom default), litehrnet_30, naive_litehrnet_18, '
                                        'wider_naive_litehrnet_18, hrnet_w32, hrnet_w48, light_hrnet, an alias, '
                                        'or an architecture .json/.yaml')
    for flag, default in (('n_channels', 32), ('num_stages', 2), ('num_branches', 2), ('num_blocks', 2)):
        p.add_argument(f'--{flag}', type=int, help=f'light_hrnet setting (default {default}); giving any of '
                                                   '--n_channels/--num_stages/--num_branches/--num_blocks implies '
                                                   '--model_type light_hrnet')
    p.add_argument('--target_res', type=resolution, help='input HxW (default 256x192; mpii 256x256; demo 128x96)')
    p.add_argument('--dataset', choices=tuple(DATASETS), default='coco',
                   help='layout under --data_root: coco: annotations/person_keypoints_{train,val}2017.json, '
                        '{train,val}2017/; mpii: annotations/mpii_{train,val}.json and mpii_gt_val.mat, images/ '
                        '(validated with PCKh); custom, demo: annotations/{train,val}.json, images/')
    p.add_argument('--data_root', help='dataset folder (demo: where it is generated, default '
                                       '<checkpoint_path>/demo_data)')
    p.add_argument('--train_ann', help='training annotation file (over the layout; with --val_ann and --img_dir '
                                       'no --data_root is needed)')
    p.add_argument('--val_ann', help='validation annotation file (over the layout)')
    p.add_argument('--img_dir', help='image folder of both annotation files (over the layout)')
    add_keypoint_flags(p)
    p.add_argument('--best_metric', help='validation metric(s) picking best.ckpt, comma-separated (AP, AR, PCK@0.1, '
                                         'EPE, MRE, SDR@2, Mean, loss, ...; the first picks best.ckpt, each keeps '
                                         'best_<metric>.ckpt; lower is better for loss/EPE/MRE)')
    p.add_argument('--pck_thresholds', type=number_list(float), help='PCK thresholds of validation (default '
                                                                     '0.05,0.1,0.2)')
    p.add_argument('--sdr_thresholds', type=number_list(float), help='validation MRE and SDR at these pixel radii')
    p.add_argument('--checkpoint_path', help='output folder: checkpoints, logs, metrics (default output; when it '
                                             'holds an earlier run, the next free output-2, output-3, ...)')
    p.add_argument('--overwrite', type=str2bool, nargs='?', const=True, metavar='true|false',
                   help='replace the run already in --checkpoint_path (default: refuse; --resume continues it)')
    p.add_argument('--epochs', type=int, help='default 210 (demo 10)')
    p.add_argument('--train_batch', type=int, help='batch size per device (default 64; mpii and HRNets 32; demo 16)')
    p.add_argument('--lr', type=float, help='Adam learning rate (default 2e-3; HRNets 1e-3; demo 4e-3)')
    p.add_argument('--lr_steps', type=number_list(int), help='epochs where the rate drops x0.1 (default 170,200 scaled to '
                                                 '--epochs)')
    p.add_argument('--warmup_iters', type=int, help='linear warm-up steps (default 500; HRNets 0; demo 100)')
    p.add_argument('--val_interval', type=int, help='validate every N epochs (default 10; mpii 5; demo 2)')
    p.add_argument('--save_interval', type=int, help='keep epoch_NNN.ckpt every N epochs (default 10, 0: none)')
    p.add_argument('--save_checkpoint_steps', type=int,
                   help='also refresh last.ckpt every N steps (default 0: at epoch ends)')
    p.add_argument('--flip_test', '--flip', dest='flip_test', type=str2bool, metavar='true|false',
                   help='validate with flip test (default true)')
    p.add_argument('--seed', type=int, help='seed of weights, data order and augmentation (default 0)')
    p.add_argument('--workers', type=int, help='data loading threads (default 1, fastest on 2 cores)')
    p.add_argument('--pretrained', help='start from these weights (file, published name or URL); another '
                                        'joint count re-initialises only the final layer')
    p.add_argument('--pretrained_backbone', metavar='FILE',
                   help='HRNet family: initialise the backbone from an ImageNet HRNet (official or timm .pth / '
                        '.safetensors, mindcv .ckpt); the head starts fresh, dropped tensors are logged')
    p.add_argument('--load_ckpt', help='the earlier port\'s name for --pretrained')
    p.add_argument('--resume', nargs='?', const='auto', metavar='CKPT',
                   help='continue a run exactly (default: <checkpoint_path>/last.ckpt)')
    p.add_argument('--device_target', choices=DEVICES, help='default: auto (GPU, then Ascend, then CPU)')
    p.add_argument('--amp_level', choices=AMP_LEVELS, help='mixed precision on GPU/Ascend (default O0)')
    p.add_argument('--progress', type=str2bool, metavar='true|false', help='progress bar (default true)')
    p.add_argument('--freeze_backbone_epochs', type=int, help='train the head only for the first N epochs (default 0)')
    p.add_argument('--val_split', type=float, help='validate on this seeded share of the training file (default 0: '
                                                   'the val split)')
    p.add_argument('--early_stopping_patience', type=int,
                   help='stop after N validations without a better main metric (default 0: off)')
    p.add_argument('--sigma', type=float, help='heatmap Gaussian sigma in heatmap pixels (default 2; 3 from 72 wide)')
    p.add_argument('--heatmap_size', dest='heatmap_size_hw', type=resolution,
                   help='heatmap HxW (default: input / the network\'s output stride; checked against it)')
    p.set_defaults(optimizer=None, lr_schedule=None, augmentation=None)  # mappings: config files only
    args, notes = parse_with_config(p, argv, 'train')
    for note in notes:
        print(f"{prog}: note: {note}", file=sys.stderr)
    if args.load_ckpt and args.pretrained:
        p.error('give --pretrained or --load_ckpt, not both')
    light = {k: getattr(args, k) for k in LIGHT_FLAGS if getattr(args, k) is not None}
    if light:
        if args.model_type not in (None, 'light_hrnet'):
            p.error(f"--{' --'.join(light)} set a light_hrnet, not --model_type {args.model_type}")
        try:
            args.model_type = light_hrnet_config(**light)
        except ValueError as e:
            p.error(str(e))
    return args


def config_from_args(args):
    """The TrainConfig the arguments describe (flags not given keep the dataset's defaults)."""
    return make_config(
        args.dataset, model_type=args.model_type, input_size_hw=args.target_res, data_root=args.data_root,
        meta=args.meta, keypoints=args.keypoints, sigmas=args.sigmas, train_ann=args.train_ann, val_ann=args.val_ann,
        img_dir=args.img_dir, best_metric=args.best_metric, pck_thresholds=args.pck_thresholds,
        sdr_thresholds=args.sdr_thresholds, output_dir=args.checkpoint_path, overwrite=args.overwrite, epochs=args.epochs,
        batch_size=args.train_batch,
        lr=args.lr, milestones=args.lr_steps, warmup_iters=args.warmup_iters, val_interval=args.val_interval,
        save_interval=args.save_interval, save_checkpoint_steps=args.save_checkpoint_steps,
        flip_test=args.flip_test, seed=args.seed, workers=args.workers,
        pretrained=args.pretrained or args.load_ckpt, resume=args.resume,
        device_target=args.device_target or select_device()[0],
        amp_level=args.amp_level, progress=args.progress, optimizer=args.optimizer, lr_schedule=args.lr_schedule,
        freeze_backbone_epochs=args.freeze_backbone_epochs, augmentation=args.augmentation, sigma=args.sigma,
        heatmap_size_hw=args.heatmap_size_hw, early_stopping_patience=args.early_stopping_patience,
        val_split=args.val_split, pretrained_backbone=args.pretrained_backbone)


def check_flags(config):
    """Refuse what would fail later (model type, --pretrained, --resume) before demo data is generated."""
    check_model_type(config.model_type)
    if config.pretrained:  # a missing, unknown or damaged file fails here; a download happens now
        read_tensors(resolve_checkpoint(config.pretrained))
    if config.pretrained_backbone and not Path(config.pretrained_backbone).is_file():
        raise ValueError(f"{config.pretrained_backbone}: no such file (--pretrained_backbone)")
    resume = (Path(config.output_dir or DEFAULT_OUTPUT_DIR) / 'last.ckpt' if config.resume == 'auto'
              else config.resume)
    if resume and not Path(resume).is_file():
        raise ValueError(f"{resume}: no checkpoint to resume from")


def run(args, prog='train.py'):
    """Train as the arguments say; a stopped run (NaN loss, full disk) exits with code 1 and one line,
    an interrupted one (Ctrl-C, SIGTERM: last.ckpt saved) with 130 / 143."""
    config = config_from_args(args)
    check_flags(config)
    try:
        train(config)
    except TrainingStopped as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 1
    except TrainingInterrupted as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return e.exit_code
    return 0


def main(argv=None, prog=None):
    prog = prog or program_name('train')
    return run_main(prog, lambda args: run(args, prog), parse_args(argv, prog))
