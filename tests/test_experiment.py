"""Experiment config files: loading, aliases, overriding (flags, --cfg_options), refusal, round trip, shipped configs."""
import dataclasses
import json

import numpy as np
import pytest
import yaml

from litehrnet.commands import eval as eval_cli
from litehrnet.commands import export as export_cli
from litehrnet.commands import infer as infer_cli
from litehrnet.commands import train as train_cli
from litehrnet.data.transforms import TopDownTrainTransform
from litehrnet.engine.config import configure_transform, make_config, uses_recipe_optimizer
from litehrnet.experiment import CONFIG_DIR, find_config, list_configs, parse_cfg_options
from litehrnet.keypoints import get_keypoint_info
from litehrnet.models.registry import create_model


def _write(tmp_path, data, name='exp.yaml'):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if name.endswith('.yaml') else json.dumps(data))
    return path


def _train_config(argv):
    return train_cli.config_from_args(train_cli.parse_args(argv))


def test_file_values_flags_override_and_nested_cfg_options(tmp_path):
    path = _write(tmp_path, dict(dataset='demo', target_res='128x64', train_batch=4, epochs=7, lr=1e-3,
                                 optimizer=dict(type='adamw', weight_decay=0.01),
                                 lr_schedule=dict(type='cosine', warmup_epochs=1, min_lr=1e-6)))
    cfg = _train_config(['--config', str(path)])
    assert (cfg.dataset, cfg.input_size_hw, cfg.batch_size, cfg.epochs, cfg.lr) == ('demo', (128, 64), 4, 7, 1e-3)
    assert cfg.optimizer == dict(type='adamw', weight_decay=0.01)
    cfg = _train_config(['--config', str(path), '--epochs', '3', '--train_batch', '2',
                         '--cfg_options', 'optimizer.weight_decay=0.05', 'lr_schedule.min_lr=2e-6', 'seed=5'])
    assert (cfg.epochs, cfg.batch_size, cfg.seed) == (3, 2, 5)  # flags and cfg_options beat the file
    assert cfg.optimizer == dict(type='adamw', weight_decay=0.05)  # merged into the file's mapping
    assert cfg.lr_schedule == dict(type='cosine', warmup_epochs=1, min_lr=2e-6)
    assert cfg.lr == 1e-3 and cfg.input_size_hw == (128, 64)  # the rest of the file stays


def test_written_names_and_flag_names_are_aliases(tmp_path):
    by_field = _write(tmp_path, dict(input_size_hw=[128, 96], batch_size=8, output_dir='runA', milestones=[3, 4]),
                      'a.yaml')
    by_flag = _write(tmp_path, dict(target_res='128x96', train_batch=8, checkpoint_path='runA', lr_steps=[3, 4]),
                     'b.yaml')
    a, b = _train_config(['--config', str(by_field)]), _train_config(['--config', str(by_flag)])
    assert a == b and (a.input_size_hw, a.batch_size, a.output_dir, a.milestones) == ((128, 96), 8, 'runA', (3, 4))
    assert _train_config(['--config', str(by_field), '--checkpoint_path', 'runB']).output_dir == 'runB'
    both = _write(tmp_path, dict(batch_size=8, train_batch=4), 'c.yaml')
    with pytest.raises(SystemExit) as e:
        train_cli.parse_args(['--config', str(both)])
    assert e.value.code == 2


@pytest.mark.parametrize('data, words', [
    (dict(epochs=3, learning_rate=1e-3), ["unknown key 'learning_rate'"]),
    (dict(eval=dict(chekpoint='x')), ["unknown key 'chekpoint'", 'eval section']),
    ([1, 2], ['must hold a mapping']),
])
def test_unknown_keys_are_refused_naming_key_and_file(tmp_path, capsys, data, words):
    path = _write(tmp_path, data)
    # a section is checked by its own command (train.py leaves the eval section to eval.py)
    for cli in (eval_cli,) if 'eval section' in words else (train_cli, eval_cli):
        with pytest.raises(SystemExit) as e:
            cli.parse_args(['--config', str(path), '--checkpoint', 'x'] if cli is eval_cli else ['--config', str(path)])
        assert e.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(path) in err and all(w in err for w in words), err


def test_missing_file_and_bad_yaml_are_one_line(tmp_path, capsys):
    bad = tmp_path / 'bad.yaml'
    bad.write_text('epochs: [1, 2\n')
    for name in (str(tmp_path / 'nope.yaml'), 'no_such_shipped_config', str(bad)):
        with pytest.raises(SystemExit) as e:
            train_cli.parse_args(['--config', name])
        assert e.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and name in err


def test_the_written_config_reproduces_the_run_and_derived_keys_are_ignored(tmp_path, capsys):
    cfg = _train_config(['--dataset', 'demo_landmarks', '--epochs', '4', '--freeze_backbone_epochs', '1',
                         '--val_split', '0.2', '--checkpoint_path', str(tmp_path / 'run'),
                         '--cfg_options', 'augmentation.rotation=5'])
    written = dict(dataclasses.asdict(cfg), resume=None, val_ann='x/val.json', num_joints=40)  # as the trainer writes
    path = _write(tmp_path, json.loads(json.dumps(written, default=str)), 'config.json')
    again = _train_config(['--config', str(path)])
    assert again == cfg
    err = capsys.readouterr().err
    assert 'val_ann is derived' in err and 'num_joints is derived' in err
    assert _train_config(['--config', str(path), '--checkpoint_path', 'elsewhere']).output_dir == 'elsewhere'


def test_other_commands_take_shared_keys_and_their_section(tmp_path):
    path = _write(tmp_path, dict(model_type='litehrnet_30', input_size_hw='384x288', dataset='mpii', epochs=5,
                                 batch_size=64, flip_test=False,
                                 eval=dict(checkpoint='best.ckpt', batch_size=8),
                                 infer=dict(infer_data_root='in', out_data_root='out', kpt_thr=0.5),
                                 export=dict(checkpoint='best.ckpt', output='m.onnx', file_format='ONNX')))
    ev = eval_cli.parse_args(['--config', str(path)])
    assert (ev.model_type, ev.target_res, ev.dataset, ev.checkpoint, ev.batch_size, ev.flip_test) == \
        ('litehrnet_30', (384, 288), 'mpii', 'best.ckpt', 8, False)  # batch_size: the section's, not training's
    assert eval_cli.parse_args(['--config', str(path), '--batch_size', '2']).batch_size == 2
    inf = infer_cli.parse_args(['--config', str(path)])
    assert (inf.infer_data_root, inf.out_data_root, inf.kpt_thr, inf.batch_size) == ('in', 'out', 0.5, 16)
    ex = export_cli.parse_args(['--config', str(path)])
    assert (ex.output, ex.file_format, ex.target_res, ex.flip_test) == ('m.onnx', 'ONNX', (384, 288), False)
    assert export_cli.parse_args(['--config', str(path), '--flip_test', 'true']).flip_test is True


def test_cfg_options_values_are_yaml():
    assert parse_cfg_options(['a.b=3', 'a.c=1e-4', 'd=false', 'e=[4, 8]', 'f=text']) == \
        dict(a=dict(b=3, c=1e-4), d=False, e=[4, 8], f='text')


def test_augmentation_switches_set_the_transform():
    info = get_keypoint_info('coco')
    t = configure_transform(TopDownTrainTransform(info, (64, 64)),
                            dict(flip=False, rotation=10, scale=[0.9, 1.1], half_body=False, brightness=0.1,
                                 contrast=0.2))
    assert (t.flip_prob, t.rot_factor, t.half_body_prob, t.brightness, t.contrast) == (0.0, 10.0, 0.0, 0.1, 0.2)
    assert t.scale_factor == pytest.approx(0.1)
    with pytest.raises(ValueError, match='symmetric'):
        configure_transform(TopDownTrainTransform(info, (64, 64)), dict(scale=[0.8, 1.1]))
    with pytest.raises(ValueError, match='unknown augmentation'):
        configure_transform(TopDownTrainTransform(info, (64, 64)), dict(mixup=True))


def test_brightness_and_contrast_jitter_change_the_crop_only_when_on():
    info = get_keypoint_info('coco')
    rng_image = np.random.default_rng(0)
    image = rng_image.integers(60, 190, (80, 80, 3), dtype=np.uint8)
    joints, visible = np.full((17, 2), 40.0, np.float32), np.ones(17, np.float32)
    center, scale = np.array([40.0, 40.0]), np.array([0.4, 0.4])

    def crop(**aug):
        t = configure_transform(TopDownTrainTransform(info, (64, 64)),
                                dict(dict(flip=False, rotation=0, scale=[1, 1], half_body=False), **aug))
        return t(image, joints, visible, center, scale, np.random.default_rng(3))[0]

    plain, again = crop(), crop()
    np.testing.assert_array_equal(plain, again)
    jittered = crop(brightness=0.2, contrast=0.2)
    assert not np.allclose(plain, jittered)
    # contrast c and brightness b: normalised values change by an affine map per channel (clipping aside)
    a, b = np.polyfit(plain[0].ravel(), jittered[0].ravel(), 1)
    assert a != pytest.approx(1.0, abs=1e-3) or b != pytest.approx(0.0, abs=1e-3)


def test_recipe_optimizer_only_when_asked():
    assert not uses_recipe_optimizer(make_config('coco'))
    assert not uses_recipe_optimizer(make_config('coco', optimizer=dict(type='adam')))
    assert uses_recipe_optimizer(make_config('coco', optimizer=dict(type='adam', weight_decay=1e-4)))
    assert uses_recipe_optimizer(make_config('coco', optimizer=dict(type='sgd', momentum=0.9)))
    assert uses_recipe_optimizer(make_config('coco', freeze_backbone_epochs=2))
    assert uses_recipe_optimizer(make_config('demo_landmarks'))


def test_recipe_settings_are_checked():
    for bad, match in ((dict(freeze_backbone_epochs=210), 'freeze_backbone_epochs'), (dict(val_split=1.0), 'val_split'),
                       (dict(sigma=0), 'sigma'), (dict(optimizer='adamw'), 'optimizer must be a mapping'),
                       (dict(early_stopping_patience=-1), 'early_stopping_patience')):
        with pytest.raises(ValueError, match=match):
            make_config('coco', **bad)


def test_shipped_configs_are_found_by_name():
    names = list_configs()
    for name in ('demo', 'demo_landmarks', 'atrw_hrnet_w32_256x256', 'vertebrae_hrnet_w32_512x512',
                 'litehrnet_18_coco_256x192', 'litehrnet_30_coco_384x288', 'litehrnet_18_mpii_256x256',
                 'hrnet_w32_coco_256x192', 'hrnet_w32_coco_384x288', 'hrnet_w48_coco_256x192',
                 'hrnet_w48_coco_384x288', 'hrnet_w32_mpii_256x256'):
        assert name in names
        assert find_config(name) == CONFIG_DIR / f'{name}.yaml' == find_config(f'{name}.yaml')


JOINTS = {'coco': 17, 'mpii': 16, 'demo': 17, 'demo_landmarks': 40, 'custom': None}
CUSTOM_JOINTS = {'atrw_hrnet_w32_256x256': 15, 'vertebrae_hrnet_w32_512x512': 40}
# building these in PYNATIVE takes longest (measured on 2 cores: hrnet_w48 about 4 s, the rest under 3 s): all built


@pytest.mark.parametrize('name', list_configs())
def test_every_shipped_config_parses_and_builds_its_model(name):
    text = (CONFIG_DIR / f'{name}.yaml').read_text()
    assert text.startswith('#') and 'Expected' in text  # says what it reproduces and the expected result
    cfg = _train_config(['--config', name])
    joints = JOINTS[cfg.dataset] or CUSTOM_JOINTS[name]
    net = create_model(cfg.model_type, num_joints=joints)
    h, w = cfg.input_size_hw
    assert h % net.input_multiple == 0 and w % net.input_multiple == 0
    assert net.output_stride in (1, 2, 4)
    params = sum(int(np.prod(p.shape)) for p in net.trainable_params())
    assert params > 1e4
    if name.startswith(('hrnet_w32', 'litehrnet_18', 'hrnet_w48')):
        assert net.model_type == name.split('_coco')[0].split('_mpii')[0]
    if name == 'vertebrae_hrnet_w32_512x512':
        assert net.output_stride == 1 and cfg.sigma == 6 and cfg.augmentation['flip'] is False
        assert cfg.optimizer == dict(type='adamw', weight_decay=0.01) and cfg.val_split == 0.15
        assert cfg.best_metric == ('loss', 'MRE') and cfg.sdr_thresholds == (4, 8, 12, 16, 20, 24)
