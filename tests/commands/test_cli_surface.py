"""The whole command-line surface against hostile inputs, in one format (issue 10).

Every front end's main(argv) runs in-process on a tiny architecture (the demo model) with bad images,
annotation files, box files, checkpoints, URLs (a server on 127.0.0.1), run folders and flags. Each
refusal is exit code 2 with exactly one stderr line naming the file (or URL, or flag) and no traceback;
each warning case is exit code 0 with exactly one warning line naming the file. The input files are
hashed before and after (conftest.CliHarness). Refusals happen before any graph is compiled.
"""
import json
import os
import shutil

import cv2
import numpy as np
import pytest

from conftest import CRAFTED_PTH, coco_annotations, free_port, make_tiny_ckpt, make_tiny_inputs
from litehrnet.engine.config import DEMO_MODEL
from litehrnet.engine.rundir import LOCK_NAME
from litehrnet.keypoint_sets import keypoint_set
from litehrnet.models import registry

COCO = keypoint_set('coco').joint_names
CLIS = ('infer', 'eval', 'export', 'train', 'convert_checkpoint')


@pytest.fixture(scope='module')
def base_inputs(tmp_path_factory):
    """Built once: the architecture file, a 17-joint checkpoint of it, one of another architecture,
    images/1.jpg and 2.jpg (64x80) and a clean 17-joint annotation file of them."""
    folder = tmp_path_factory.mktemp('surface') / 'inputs'
    config, image = make_tiny_inputs(folder)
    make_tiny_ckpt(config, folder / 'tiny.ckpt')
    other = folder / 'other.json'
    other.write_text(json.dumps(dict(DEMO_MODEL, stem_channels=8)))
    make_tiny_ckpt(other, folder / 'other.ckpt')
    (folder / 'images').mkdir()
    for name in ('1.jpg', '2.jpg'):
        cv2.imwrite(str(folder / 'images' / name), cv2.resize(cv2.imread(str(image)), (64, 80)))
    (folder / 'ann.json').write_text(json.dumps(coco_annotations(COCO)))
    return folder


class World:
    """One case's copy of the inputs (tmp_path/inputs) and its output folder (tmp_path/out)."""

    def __init__(self, base, tmp_path):
        self.inputs = tmp_path / 'inputs'
        shutil.copytree(base, self.inputs)
        self.config, self.ckpt = self.inputs / 'tiny.json', self.inputs / 'tiny.ckpt'
        self.images, self.ann = self.inputs / 'images', self.inputs / 'ann.json'
        self.out = tmp_path / 'out'

    def write(self, name, content):
        """A file in the inputs: bytes, text, or any other value as JSON (NaN allowed)."""
        path = self.inputs / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content if isinstance(content, str) else json.dumps(content))
        return path

    def argv(self, cli, **flags):
        """The command line of `cli` on the clean inputs, with `flags` set (None: left out; True: bare)."""
        base = {
            'infer': dict(model_type=self.config, checkpoint=self.ckpt, infer_data_root=self.images,
                          out_data_root=self.out, target_res='64x64', mode='pynative', device_target='CPU',
                          no_progress=True),
            'eval': dict(model_type=self.config, checkpoint=self.ckpt, ann_file=self.ann, img_dir=self.images,
                         target_res='64x64', mode='pynative', device_target='CPU', output_path=self.out,
                         no_progress=True),
            'export': dict(model_type=self.config, checkpoint=self.ckpt, target_res='64x64', device_target='CPU',
                           output=self.out / 'm'),
            'train': dict(dataset='custom', model_type=self.config, train_ann=self.ann, val_ann=self.ann,
                          img_dir=self.images, target_res='64x64', checkpoint_path=self.out, epochs=1,
                          device_target='CPU', progress='false'),
            'convert_checkpoint': dict(model_type=self.config, input=self.ckpt, output=self.out / 'c.ckpt',
                                       target_res='64x64', verify=True),
        }[cli]
        base.update(flags)
        argv = []
        for flag, value in base.items():
            if value is not None:
                argv += [f'--{flag}'] + ([] if value is True else [value])
        return argv


@pytest.fixture
def world(base_inputs, tmp_path):
    return World(base_inputs, tmp_path)


# --- the cases: id -> (cli, make(world) -> (flags, the text the one line must hold)) -------------------------

CASES = {}


def case(case_id, cli):
    def register(make):
        assert case_id not in CASES
        CASES[case_id] = (cli, make)
        return make
    return register


# annotation files: each breaks one rule of the one validator (data/validate.py)
def _drop_bbox(d):
    del d['annotations'][0]['bbox']


def _set(path, value):
    def change(d):
        target = d
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


ANNOTATIONS = {
    'no_bbox': (_drop_bbox, 'lacks bbox'),  # was a bare "error: bbox"
    'unknown_image_id': (_set(('annotations', 1, 'image_id'), 999999), 'image_id 999999 has no entry'),
    'string_number': (_set(('images', 0, 'width'), '64'), "the string '64'"),
    'top_level_list': (None, 'the top level is a JSON list'),
    'nan_keypoint': (_set(('annotations', 0, 'keypoints', 6), float('nan')), 'not finite'),
    'duplicate_image_id': (_set(('images', 1, 'id'), 1), 'duplicate image id 1'),
    'duplicate_annotation_id': (_set(('annotations', 1, 'id'), 1), 'duplicate annotation id 1'),
    'visibility_3': (_set(('annotations', 0, 'keypoints', 2), 3), 'visibility'),
}
ANN_FLAG = dict(eval='ann_file', train='train_ann', infer='ann_file')

for _cli, _flag in ANN_FLAG.items():
    for _name, (_change, _needle) in ANNOTATIONS.items():
        def _make(w, change=_change, needle=_needle, flag=_flag):
            data = coco_annotations(COCO)
            if change is None:
                data = data['annotations']
            else:
                change(data)
            bad = w.write('bad.json', data)
            return {flag: bad}, (bad, needle)
        case(f'annotation-{_name}-{_cli}', _cli)(_make)

# box files (infer --bbox_file)
BOX_FILES = {
    'missing': (None, 'not found'),
    'invalid_json': ('{"1.jpg": [[1, 2, 3', 'JSON'),
    'wrong_layout': ('[{"bbox": [1, 2]}]', 'expected'),
    'a_number': ('42', 'expected'),
}
for _name, (_content, _needle) in BOX_FILES.items():
    def _make(w, content=_content, needle=_needle):
        bad = w.inputs / 'boxes.json' if content is None else w.write('boxes.json', content)
        return dict(bbox_file=bad), (bad, needle)
    case(f'box_file-{_name}-infer', 'infer')(_make)


# checkpoints: each front end that loads one (train: --pretrained; convert_checkpoint: --input)
def _flipped(w):
    data = bytearray(w.ckpt.read_bytes())
    data[len(data) // 2] ^= 0xFF
    return w.write('flipped.ckpt', bytes(data)), 'corrupt'


def _object_npz(w):
    np.savez(w.inputs / 'objects.npz', w=np.array([{'a': 1}], dtype=object))
    return w.inputs / 'objects.npz', 'object arrays'


CHECKPOINTS = {
    'missing': lambda w: (w.inputs / 'missing.ckpt', 'missing.ckpt'),
    'truncated': lambda w: (w.write('cut.ckpt', w.ckpt.read_bytes()[: w.ckpt.stat().st_size // 2]), 'cut.ckpt'),
    'flipped_byte': _flipped,
    'crafted_pth': lambda w: (w.write('crafted.pth', CRAFTED_PTH['storage_2^60']), 'crafted.pth'),
    'object_npz': _object_npz,
    'wrong_model': lambda w: (w.inputs / 'other.ckpt', 'other.ckpt'),
}
CKPT_FLAG = dict(infer='checkpoint', eval='checkpoint', export='checkpoint', train='pretrained',
                 convert_checkpoint='input')
for _cli, _flag in CKPT_FLAG.items():
    for _name, _bad in CHECKPOINTS.items():
        def _make(w, bad=_bad, flag=_flag):
            path, needle = bad(w)
            return {flag: path}, (path, needle)
        case(f'checkpoint-{_name}-{_cli}', _cli)(_make)


# run folders (train.py)
def _earlier_run(w):
    w.out.mkdir()
    (w.out / 'last.ckpt').write_bytes(b'an earlier run')
    return {}, (w.out, '--resume')


def _live_lock(w):
    w.out.mkdir()
    (w.out / LOCK_NAME).write_text(json.dumps(dict(pid=os.getppid(), host=os.uname().nodename)))
    return {}, (w.out, f'PID {os.getppid()}')


case('run_folder-named_folder_holding_a_run-train', 'train')(_earlier_run)
case('run_folder-lock_held_by_a_live_pid-train', 'train')(_live_lock)
case('run_folder-resume_without_last_ckpt-train', 'train')(
    lambda w: (dict(resume=True), (w.out / 'last.ckpt', 'no checkpoint to resume from')))

# flags
ARCH_FILES = {'yaml': 'stages: [\n  {num_modules: 1\n', 'json': '{"stages": [1, 2,, 3]}'}
for _cli in CLIS:
    case(f'flag-unknown_model_type-{_cli}', _cli)(lambda w: (dict(model_type='litehrnet_99'), ('litehrnet_99',)))
    case(f'flag-target_res_not_a_size-{_cli}', _cli)(lambda w: (dict(target_res='abc'), ('--target_res', 'abc')))
    case(f'flag-target_res_not_a_multiple-{_cli}', _cli)(lambda w: (dict(target_res='100x64'), ('100x64',)))
    for _kind, _text in ARCH_FILES.items():
        def _make(w, kind=_kind, text=_text):
            bad = w.write(f'broken.{kind}', text)
            return dict(model_type=bad), (bad, f'not valid {kind.upper()}', 'line')
        case(f'flag-{_kind}_syntax_error_in_model_type-{_cli}', _cli)(_make)


@pytest.mark.parametrize('case_id', sorted(CASES))
def test_refused_in_one_line(case_id, world, harness):
    cli, make = CASES[case_id]
    flags, needles = make(world)
    before = sorted(p.name for p in world.out.iterdir()) if world.out.is_dir() else None
    inputs = [world.inputs] + [world.out] * world.out.is_dir()  # an earlier run's files are inputs too
    code, lines, _ = harness.run(cli, world.argv(cli, **flags), inputs=inputs)
    harness.one_line(code, lines, *needles)
    after = sorted(p.name for p in world.out.iterdir()) if world.out.is_dir() else None
    assert after in (before, []), after  # nothing written in the run folder (at most the empty folder made)


# --- warnings: the run goes on ------------------------------------------------------------------------------

def _one_warning(code, lines, *needles):
    """Exit code 0 and, besides infer's 'device:' line, exactly one 'warning:' line holding each needle."""
    assert code == 0, lines
    rest = [line for line in lines if not line.startswith('device: ')]
    assert len(rest) == 1 and rest[0].startswith('warning: '), lines
    for needle in needles:
        assert str(needle) in rest[0], (needle, rest[0])


@pytest.mark.parametrize('kind', ['unreadable', 'zero_byte', 'truncated'])
def test_a_bad_image_is_one_warning_and_the_run_goes_on(kind, world, harness):
    good = (world.images / '1.jpg').read_bytes()
    content = {'unreadable': b'not an image at all', 'zero_byte': b'', 'truncated': good[: len(good) // 2]}[kind]
    bad = world.write('images/bad.jpg', content)
    code, lines, out = harness.run('infer', world.argv('infer'), inputs=[world.inputs])
    _one_warning(code, lines, bad.name, 'truncated JPEG' if kind == 'truncated' else 'unreadable image')
    for name in ('1.jpg', '2.jpg'):  # the other images were processed
        assert json.loads((world.out / f'{name}.json').read_text())['persons']
    assert (world.out / 'bad.jpg.json').is_file() == (kind == 'truncated')  # a cut JPEG still decodes
    assert (' 1 skipped' in out) == (kind != 'truncated')


@pytest.mark.parametrize('unreadable', [('1.jpg',), ('1.jpg', '2.jpg')])
def test_unreadable_images_in_eval(unreadable, world, harness):
    """One unreadable image of two: one warning, the other is scored; none readable: refused in one line."""
    for name in unreadable:
        world.write(f'images/{name}', b'')
    code, lines, out = harness.run('eval', world.argv('eval'), inputs=[world.inputs])
    if len(unreadable) == 2:
        harness.one_line(code, lines, 'none of the 2 images could be read', world.images / '1.jpg')
        return
    _one_warning(code, lines, '1 of 2 images could not be read', world.images / '1.jpg')
    assert json.loads((world.out / 'metrics.json').read_text())['AP'] >= 0


def test_invalid_boxes_are_one_warning_and_the_run_goes_on(world, harness):
    boxes = world.write('boxes.json', {'1.jpg': [[float('nan'), 0, 5, 5, 0.9], [0, 0, -3, 5, 0.9]],
                                       '2.jpg': [[5, 5, 30, 40, 0.9]]})
    code, lines, _ = harness.run('infer', world.argv('infer', bbox_file=boxes), inputs=[world.inputs])
    _one_warning(code, lines, '1.jpg', 'dropped 2 invalid box(es)')
    assert json.loads((world.out / '1.jpg.json').read_text())['persons'] == []
    assert len(json.loads((world.out / '2.jpg.json').read_text())['persons']) == 1


# --- URLs: a server on 127.0.0.1 started and stopped by the test ---------------------------------------------

@pytest.mark.parametrize('failure', ['http404', 'connection_refused', 'cut_short', 'sha256_mismatch'])
@pytest.mark.parametrize('cli', CLIS)
def test_a_failed_download_is_one_line(cli, failure, world, http_server, tmp_path, monkeypatch, harness):
    cache = tmp_path / 'cache'
    monkeypatch.setenv('LITEHRNET_CKPT_DIR', str(cache))
    url = {'http404': f'{http_server}/missing/w.ckpt', 'connection_refused': f'http://127.0.0.1:{free_port()}/w.ckpt',
           'cut_short': f'{http_server}/cut/w.ckpt'}.get(failure)
    weights, reason = url, {'http404': '404', 'connection_refused': 'refused', 'cut_short': '2048 of 4096 bytes'}.get(
        failure)
    if failure == 'sha256_mismatch':  # a published name whose file is not the one its sum describes
        name = 'litehrnet_18_mpii_256x256'
        monkeypatch.setattr(registry, 'BASE_URL', f'{http_server}/pub/')
        monkeypatch.setitem(registry.PUBLISHED, name, registry.PublishedCheckpoint(
            **{**registry.PUBLISHED[name].__dict__, 'sha256': 'ab' * 32}))
        weights, url, reason = name, f'{http_server}/pub/{name}.ckpt', 'sha256 mismatch'
    code, lines, _ = harness.run(cli, world.argv(cli, **{CKPT_FLAG[cli]: weights}), inputs=[world.inputs])
    harness.one_line(code, lines, url, reason, cache)
    assert not [p for p in cache.rglob('*') if p.is_file() and not p.name.endswith('.json')]  # nothing half-kept
