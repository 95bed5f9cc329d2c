"""The devices MindSpore runs the project on, and choosing one (with the execution mode)."""
import mindspore as ms

DEVICES = ('CPU', 'GPU', 'Ascend')
MODES = ('graph', 'pynative')


def set_device(device_target, mode='graph'):
    """MindSpore device and execution mode; ValueError when the device is unknown or not available."""
    if device_target not in DEVICES:
        raise ValueError(f"device_target must be one of {', '.join(DEVICES)}, got {device_target!r}")
    try:
        if ms.get_context('device_target') != device_target:  # set_device fails once kernels have run
            ms.set_device(device_target)
    except RuntimeError as e:
        raise ValueError(f"device {device_target} is not available: {str(e).strip().splitlines()[0]}") from None
    ms.set_context(mode=ms.GRAPH_MODE if mode == 'graph' else ms.PYNATIVE_MODE)
