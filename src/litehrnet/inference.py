"""Moved: the predictor to `litehrnet.predictor`, dataset evaluation to `litehrnet.evaluate`. This name stays
only so that branches written against it merge cleanly; import from those modules in new code."""
from .evaluate import evaluate_coco, evaluate_mpii, score_results  # noqa: F401
from .predictor import TopDownPredictor, padded_area, read_image_rgb  # noqa: F401
