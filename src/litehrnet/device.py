"""The devices MindSpore runs the project on, choosing one (GPU, then Ascend, then CPU), and the execution mode."""
import logging

import mindspore as ms

DEVICES = ('CPU', 'GPU', 'Ascend')
MODES = ('graph', 'pynative')
AUTO_ORDER = ('GPU', 'Ascend', 'CPU')  # what auto-selection tries, in order

log = logging.getLogger(__name__)


def available(device_target):
    """Whether MindSpore can run on the device here (its plugin loads and a device is present)."""
    if device_target == 'CPU':
        return True
    try:
        return bool(ms.hal.is_available(device_target))
    except (RuntimeError, ValueError, AttributeError):
        return False


def select_device(device_target=None):
    """(device, why): the device asked for, or (None) the first available of GPU, Ascend, CPU."""
    if device_target is not None:
        if device_target not in DEVICES:
            raise ValueError(f"device_target must be one of {', '.join(DEVICES)}, got {device_target!r}")
        return device_target, 'asked for'
    for name in AUTO_ORDER:
        if available(name):
            return name, 'auto-selected (GPU, then Ascend, then CPU)'
    return 'CPU', 'auto-selected (GPU, then Ascend, then CPU)'


def set_device(device_target=None, mode='graph'):
    """Set MindSpore's device (None: auto-select, logged) and execution mode; the device chosen.

    ValueError when the device is unknown or not available.
    """
    device_target, why = select_device(device_target)
    log.info("device: %s (%s)", device_target, why)
    try:
        if ms.get_context('device_target') != device_target:  # set_device fails once kernels have run
            ms.set_device(device_target)
    except RuntimeError as e:
        raise ValueError(f"device {device_target} is not available: {str(e).strip().splitlines()[0]}") from None
    ms.set_context(mode=ms.GRAPH_MODE if mode == 'graph' else ms.PYNATIVE_MODE)
    return device_target
