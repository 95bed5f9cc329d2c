"""Network input sizes: the one "HxW" parser, and the rule a model family states for its input size."""

INPUT_MULTIPLE = 32  # Lite-HRNet: input height and width must be multiples of this (the deepest branch is 1/32)


def check_input_size(height, width, multiple=INPUT_MULTIPLE, family="Lite-HRNet"):
    """Refuse sizes the multi-resolution branches cannot represent, before MindSpore fails deep inside."""
    if height % multiple or width % multiple or height <= 0 or width <= 0:
        raise ValueError(
            f"input size {height}x{width} (HxW) is not supported: {family} needs height and width that "
            f"are positive multiples of {multiple} (e.g. 256x192, 384x288, 256x256)")


def parse_input_size(value):
    """'HxW' (height x width, e.g. '256x192') or an (H, W) pair -> (H, W) ints; ValueError otherwise."""
    parts = value.lower().split("x") if isinstance(value, str) else list(value)
    try:
        h, w = (int(v) for v in parts)
    except (TypeError, ValueError):
        raise ValueError(f"expected HxW such as 256x192, got {value!r}") from None
    return h, w
