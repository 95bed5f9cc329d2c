"""Experiment config files: one YAML (or JSON) file holds a run's settings, for train, eval, infer and export.

    python src/train.py --config vertebrae_hrnet_w32_512x512        # a shipped config, by name
    python src/train.py --config my_run.yaml --epochs 5 --cfg_options optimizer.weight_decay=0.05
    python src/train.py --config output/config.json --checkpoint_path output-again   # reproduce a run

The file's keys are the training settings (engine.config.TrainConfig's field names: `input_size_hw`,
`batch_size`, `output_dir`, `milestones`, ...). That is the one form written (a run's config.json);
the command-line flag names are accepted too, as aliases (`target_res`, `train_batch`,
`checkpoint_path`, `lr_steps`, `heatmap_size`). Nested mappings (`optimizer`, `lr_schedule`,
`augmentation`) are values of their key. Derived keys a run writes (`val_ann`, `num_joints`) are
ignored on reading, with a note. Sections `eval:`, `infer:` and `export:` hold settings for those
commands (their own flag names, e.g. `eval: {checkpoint: best.ckpt, batch_size: 32}`); those
commands also take the shared top-level keys they have (model_type, input size, dataset, data_root,
meta, flip_test (not export, where it builds the flip into the model), device_target) and leave the
training-only ones alone.

Precedence: command-line flags > `--cfg_options key=value` (dotted keys reach into mappings; values
are read as YAML: `3`, `1e-4`, `false`, `[4, 8]`) > the file > the dataset's preset > the defaults.
An unknown key is refused with one line naming it and the file. Shipped configs live in
`litehrnet/configs/` (package data); `--config NAME` finds one by file name without the suffix.
"""
import argparse
import json
import re
from pathlib import Path

import yaml

from .engine.config import TrainConfig

CONFIG_DIR = Path(__file__).resolve().parent / 'configs'
SECTIONS = ('train', 'eval', 'infer', 'export')
# flag name -> the written (field) name
ALIASES = {'target_res': 'input_size_hw', 'train_batch': 'batch_size', 'checkpoint_path': 'output_dir',
           'lr_steps': 'milestones', 'heatmap_size': 'heatmap_size_hw'}
FIELD_TO_FLAG = {v: k for k, v in ALIASES.items()}
DERIVED = ('val_ann', 'num_joints')  # written with a run for the record; not settings
# top-level settings the other commands share with training (under the command's flag name)
SHARED = ('model_type', 'input_size_hw', 'dataset', 'data_root', 'meta', 'flip_test', 'device_target')
FIELDS = tuple(f for f in TrainConfig.__dataclass_fields__)


class _Loader(yaml.SafeLoader):
    """YAML with `1e-4` read as a number (YAML 1.1 wants `1.0e-4`; users write both)."""


_Loader.add_implicit_resolver('tag:yaml.org,2002:float', re.compile(r'^[-+]?[0-9]+(\.[0-9]*)?[eE][-+]?[0-9]+$'),
                              list('-+0123456789'))


def load_yaml(text):
    """yaml.safe_load, reading 1e-4 as a float."""
    return yaml.load(text, Loader=_Loader)


class ConfigFileError(ValueError):
    """A config file that cannot be used: missing, unreadable, not a mapping, or with an unknown key."""


def list_configs():
    """The names of the shipped configs."""
    return sorted(p.stem for p in CONFIG_DIR.glob('*.yaml'))


def find_config(name_or_path):
    """The config file `name_or_path` names: an existing file, or a shipped config's name."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = CONFIG_DIR / (path.name if path.suffix in ('.yaml', '.yml') else f'{path.name}.yaml')
    if path.parent == Path('.') and shipped.is_file():
        return shipped
    raise ConfigFileError(f"{name_or_path}: no such config file, and no shipped config of that name "
                          f"(shipped: {', '.join(list_configs())})")


def read_config_file(path):
    """The mapping a .yaml/.yml/.json config file holds (one-line ConfigFileError otherwise)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigFileError(f"{path}: cannot read the config file ({e.strerror or e})") from None
    try:
        data = json.loads(text) if path.suffix == '.json' else load_yaml(text)
    except (ValueError, yaml.YAMLError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigFileError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'} ({first})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigFileError(f"{path}: a config file must hold a mapping of settings, got {type(data).__name__}")
    return data


def parse_cfg_options(options):
    """`['optimizer.type=adamw', 'epochs=5']` -> {'optimizer': {'type': 'adamw'}, 'epochs': 5} (values as YAML)."""
    out = {}
    for option in options or ():
        key, sep, text = option.partition('=')
        if not sep or not key.strip():
            raise ConfigFileError(f"--cfg_options: expected key=value, got {option!r}")
        try:
            value = load_yaml(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        node = out
        parts = key.strip().split('.')
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigFileError(f"--cfg_options: {key} goes inside {part}, which is not a mapping")
        node[parts[-1]] = value
    return out


def merge(base, extra):
    """`extra` laid over `base`, mappings merged key by key (neither is modified)."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def canonical(data, source):
    """The file's settings under their written names: (settings, notes); unknown keys refused naming them."""
    settings, notes = {}, []
    for key, value in data.items():
        name = ALIASES.get(key, key)
        if key in DERIVED:
            notes.append(f"{source}: {key} is derived from the data, not a setting: ignored")
            continue
        if name not in FIELDS and name not in SECTIONS:
            raise ConfigFileError(f"{source}: unknown key {key!r} (settings are TrainConfig's fields, their "
                                  f"flag aliases, and the sections {', '.join(SECTIONS[1:])})")
        if name in SECTIONS and not isinstance(value, dict):
            raise ConfigFileError(f"{source}: {key} must be a mapping of {key} settings")
        if name in settings:
            raise ConfigFileError(f"{source}: {key} given twice (as {FIELD_TO_FLAG.get(name, name)} and {name})")
        settings[name] = value
    return settings, notes


def load_experiment(config=None, cfg_options=None):
    """(settings under written names, notes, source) of a config file and --cfg_options laid over it."""
    source = str(find_config(config)) if config else '--cfg_options'
    data = read_config_file(source) if config else {}
    data = merge(data, parse_cfg_options(cfg_options))
    settings, notes = canonical(data, source)
    return settings, notes, source


def _dests(parser):
    flags = {a.dest for a in parser._actions if a.dest not in ('help', 'config', 'cfg_options')}
    return flags | set(parser._defaults)  # set_defaults: settings without a flag (mappings)


def _dest(name, dests):
    """The parser destination of a setting: its own name, or its flag alias."""
    return name if name in dests else FIELD_TO_FLAG.get(name, name)


def command_defaults(parser, command, settings, source):
    """The parser defaults (by destination) that `settings` give to `command` ('train', 'eval', ...)."""
    dests = _dests(parser)
    out = {}
    if command == 'train':
        for name, value in settings.items():
            if name in SECTIONS:
                if name == 'train':
                    out.update(command_defaults(parser, command, canonical(value, f"{source} (train)")[0],
                                                source))
                continue
            dest = _dest(name, dests)
            if dest not in dests:  # a field the command line has no flag for
                raise ConfigFileError(f"{source}: {name} is not a setting of train.py")
            out[dest] = value
        return out
    for name in SHARED:
        dest = _dest(name, dests)
        if name == 'flip_test' and command == 'export':  # export's flip_test builds the flip into the model
            continue
        if name in settings and dest in dests:
            out[dest] = settings[name]
    for key, value in (settings.get(command) or {}).items():
        dest = key if key in dests else _dest(ALIASES.get(key, key), dests)
        if dest not in dests:
            raise ConfigFileError(f"{source}: unknown key {key!r} in the {command} section (the {command} "
                                  f"settings are its flags: {', '.join(sorted(dests))})")
        out[dest] = value
    return out


def add_config_flags(parser):
    """--config and --cfg_options on a command's parser."""
    parser.add_argument('--config', help='experiment config file (.yaml/.json), or a shipped config\'s name '
                                         '(see litehrnet/configs/); flags given here override it')
    parser.add_argument('--cfg_options', nargs='+', metavar='KEY=VALUE', default=[],
                        help='override config keys, nested ones dotted: optimizer.weight_decay=0.05')


def parse_with_config(parser, argv, command):
    """Parse `argv` with the file named by --config (and --cfg_options) as the defaults; returns (args, notes).

    A ConfigFileError becomes the parser's one-line error (exit code 2)."""
    early = argparse.ArgumentParser(add_help=False)  # only these two, before the required flags are checked
    early.add_argument('--config')
    early.add_argument('--cfg_options', nargs='+', default=[])
    pre, _ = early.parse_known_args(argv)
    notes = []
    if pre.config or pre.cfg_options:
        try:
            settings, notes, source = load_experiment(pre.config, pre.cfg_options)
            defaults = command_defaults(parser, command, settings, source)
        except ConfigFileError as e:
            parser.error(str(e))
        parser.set_defaults(**defaults)  # string values go through the flag's type (e.g. '256x192')
        for action in parser._actions:  # a required flag the file gives is not required on the command line
            if action.dest in defaults:
                action.required = False
    args = parser.parse_args(argv)
    return args, notes
