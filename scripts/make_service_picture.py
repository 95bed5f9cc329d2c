"""Draw the README's "Pose service" picture: tracked people on a synthetic video of the demo's figures.

    python src/train.py --dataset demo --checkpoint_path output/demo        # the demo model (~3 min)
    python scripts/make_service_picture.py --model_type output/demo/model.json \
        --checkpoint output/demo/best.ckpt --target_res 128x96 --out imgs/pose_service_tracking.jpg

The video is bench_service.synthetic_video: two of the demo's figures (litehrnet.data.demo)
walking past each other on 640x480 frames. No trained person detector can be had here, so the boxes
come from a box file written beside the frames (the figures' true boxes, {frame_NNN.png: [[x, y, w,
h, 1]]}); the PoseEstimator runs the frames through the same code as infer.py (`iter_track`, tracking
on), and three frames (first, middle, last) are drawn side by side with their track ids.
"""
import argparse
import json
import os
import sys
import tempfile

import cv2
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))
from bench_service import synthetic_video  # noqa: E402 (scripts/ is on sys.path: this script's folder)
from litehrnet.cli import resolution  # noqa: E402
from litehrnet.drawing import draw_poses  # noqa: E402
from litehrnet.fileio import write_json_atomic  # noqa: E402
from litehrnet.service import PoseEstimator  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--model_type', default='litehrnet_18')
    p.add_argument('--checkpoint')
    p.add_argument('--target_res', type=resolution, default=(256, 192))
    p.add_argument('--frames', type=int, default=12)
    p.add_argument('--out', default='imgs/pose_service_tracking.jpg')
    args = p.parse_args(argv)
    frames, truth = synthetic_video(args.frames)
    names = [f'frame_{i:03d}.png' for i in range(len(frames))]
    with tempfile.TemporaryDirectory() as tmp:
        box_file = os.path.join(tmp, 'boxes.json')
        with open(box_file, 'w') as f:
            json.dump({n: rows for n, rows in zip(names, truth)}, f)
        est = PoseEstimator(args.model_type, args.checkpoint, bbox_file=box_file, target_res=args.target_res,
                            mode='pynative', max_batch_size=4)
        results = list(est.iter_track(zip(names, frames)))
    picks = [0, len(results) // 2, len(results) - 1]
    panels = []
    for i in picks:
        name, image, persons = results[i]
        drawn = draw_poses(image, persons, est.info.skeleton, est.kpt_thr)
        cv2.putText(drawn, f"frame {i}", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (255, 255, 255), 2, cv2.LINE_AA)
        panels.append(cv2.resize(drawn, (400, 300), interpolation=cv2.INTER_AREA))
    picture = np.concatenate(panels, axis=1)
    ids = [[p['track_id'] for p in persons] for _, _, persons in results]
    root, ext = os.path.splitext(args.out)
    tmp_out = f"{root}.part{ext}"
    if not cv2.imwrite(tmp_out, cv2.cvtColor(picture, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90]):
        raise SystemExit(f"{args.out}: could not write")
    os.replace(tmp_out, args.out)
    write_json_atomic(args.out + '.json', dict(model_type=str(args.model_type), checkpoint=args.checkpoint,
                                              frames=args.frames, track_ids=ids))
    print(f"{args.out}: frames {picks}, track ids per frame {ids}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
