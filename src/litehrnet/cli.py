"""Shared pieces of the command lines (litehrnet.commands): one-line errors with exit code 2, one-line
warnings, flag types."""
import argparse
import contextlib
import logging
import sys
import warnings

from tqdm import tqdm

from .checkpoint.download import DownloadError
from .models.inputs import parse_input_size


class ArgParser(argparse.ArgumentParser):
    """argparse whose errors are one line on stderr and exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def str2bool(value):
    """'true'/'false' (also yes/no, 1/0, on/off) as a real bool: `--flip_test false` means False."""
    v = value.strip().lower()
    if v in ('true', 'yes', '1', 'on'):
        return True
    if v in ('false', 'no', '0', 'off'):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def resolution(value):
    """'HxW' (height x width, e.g. 256x192) -> (H, W), as an argparse type."""
    try:
        return parse_input_size(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def number_list(kind):
    """An argparse type for comma-separated numbers: '170,200' -> (170, 200) with kind=int."""
    def parse(value):
        try:
            return tuple(kind(v) for v in value.split(',') if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {value!r}") from None
    return parse


def add_keypoint_flags(parser):
    """--keypoints, --meta and --sigmas: the same three flags in every command line."""
    parser.add_argument('--keypoints', help='keypoint set: a built-in name (coco, mpii, mpii_trb, crowdpose, aic, '
                                            'ochuman, atrw, animalpose, ap10k, coco_wholebody_body) or a COCO-format '
                                            'annotation json (default: recognised from the annotation file, or coco)')
    parser.add_argument('--meta', help='keypoint metadata .json/.yaml over the set\'s values (flip_pairs, skeleton, '
                                       'sigmas, upper/lower body ids, joint_weights)')
    parser.add_argument('--sigmas', type=number_list(float), help='OKS sigmas, comma-separated, one per joint')


def warning_line(message):
    """One 'warning: ...' line on stderr, written through tqdm so that a progress bar stays intact."""
    tqdm.write(f"warning: {' '.join(str(message).split())}", file=sys.stderr)


class _WarningLines(logging.Handler):
    def emit(self, record):
        warning_line(record.getMessage())


@contextlib.contextmanager
def console_warnings():
    """While a command runs, the library's logged warnings ('litehrnet' loggers) and Python warnings are
    one 'warning: ...' line each on stderr (Python's own format takes two lines, with a source line)."""
    handler = _WarningLines(logging.WARNING)
    logger = logging.getLogger('litehrnet')
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = lambda message, *args, **kwargs: warning_line(message)
            yield
    finally:
        logger.removeHandler(handler)


def run_main(prog, run, args):
    """`run(args)`'s exit code; bad input (ValueError, KeyError, OSError) and a failed download (DownloadError)
    become one line on stderr and exit code 2. Warnings are one line each (console_warnings)."""
    try:
        with console_warnings():
            return run(args)
    except (ValueError, KeyError, OSError, DownloadError) as e:  # CheckpointError, ModelTypeError: ValueErrors
        message = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        first = message.strip().splitlines()[0] if message.strip() else type(e).__name__
        print(f"{prog}: error: {first}", file=sys.stderr)
        return 2
