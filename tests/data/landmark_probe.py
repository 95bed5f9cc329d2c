"""The landmark demo learns: `python tests/data/landmark_probe.py ROOT EPOCHS FREEZE_EPOCHS` trains a narrow Lite-HRNet
on it (256x128, batch 8, AdamW lr 2e-3 wd 0.01, cosine with 1 warm-up epoch to lr/100, no flip, rotation
+-10, scale +-0.1) with the library pieces alone (no trainer), printing one JSON line per epoch, with the
validation MRE / SDR (pixels, ground-truth boxes, no flip test) after the first and the last epoch.
"""
import json
import sys
import time

import mindspore as ms
import numpy as np
from mindspore import nn

from litehrnet import create_model
from litehrnet.data.coco import CocoKeypointDataset
from litehrnet.data.datasets import dataset_spec
from litehrnet.data.demo_landmarks import ensure_landmark_dataset
from litehrnet.data.pipeline import build_train_dataset
from litehrnet.engine.freeze import BackboneFreezer
from litehrnet.engine.loss import JointsMSELoss, NetWithLoss
from litehrnet.engine.optim import build_optimizer
from litehrnet.engine.schedule import build_schedule
from litehrnet.evaluate import evaluate_coco

INPUT_HW = (256, 128)
NARROW = dict(stem_channels=16, stages=[dict(num_modules=1, num_branches=b, num_blocks=1,
                                             num_channels=[16, 32, 64, 128][:b]) for b in (2, 3, 4)])


def main(root, epochs, freeze_epochs, lr=2e-3):
    ms.set_context(mode=ms.GRAPH_MODE, device_target='CPU')
    root = ensure_landmark_dataset(root)
    spec = dataset_spec('custom')
    train = CocoKeypointDataset(*spec.split_files(root, 'train'), INPUT_HW, train=True, seed=0,
                                meta=root / 'meta.json')
    aug = train.transform  # the vertebra recipe's augmentation: no flip (laterality), small rotation and scale
    aug.flip_prob, aug.rot_factor, aug.scale_factor, aug.half_body_prob = 0.0, 10, 0.1, 0.0
    ms.set_seed(0)
    net = create_model(NARROW, num_joints=train.info.num_joints)
    data, sampler = build_train_dataset(train, 8, epochs, seed=0)
    spe = sampler.steps_per_epoch
    rates = build_schedule(dict(type='cosine', warmup_epochs=1, min_lr=lr / 100), lr, spe, epochs)
    freezer = BackboneFreezer(net) if freeze_epochs else None
    optimizer = build_optimizer(dict(type='adamw', weight_decay=0.01), net, rates,
                                freezable=freezer.freezable if freezer else None)
    if freezer:
        freezer.attach(optimizer)
    step = nn.TrainOneStepCell(NetWithLoss(net, JointsMSELoss()), optimizer)
    step.set_train()

    def validate():
        m = evaluate_coco(net, *spec.split_files(root, 'val'), INPUT_HW, flip_test=False, keypoint_info=train.info,
                          progress=False, sdr_thresholds=(2, 4, 8))
        step.set_train()
        return {k: m[k] for k in ('MRE', 'SDR@2', 'SDR@4', 'SDR@8')}

    tic, losses = time.time(), []
    for i, (image, target, weight) in enumerate(data.create_tuple_iterator(num_epochs=1)):
        if freezer:
            freezer.set_frozen(freezer.frozen_at(i, spe, freeze_epochs))
        losses.append(float(step(image, target, weight).asnumpy()))
        if (i + 1) % spe == 0:
            epoch = (i + 1) // spe
            row = dict(epoch=epoch, loss=float(np.mean(losses[-spe:])), seconds=time.time() - tic)
            if epoch in (1, epochs):
                row.update(validate())
            print(json.dumps(row), flush=True)


if __name__ == '__main__':
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
