"""The training curves as a PNG, drawn with OpenCV (no plotting library needed): loss and the validation metric."""
import cv2
import numpy as np

_PANEL_WH = (480, 300)
_MARGIN = (62, 22, 20, 42)  # left, right, top, bottom
_INK, _GRID = (40, 40, 40), (225, 225, 225)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _ticks(lo, hi, count=5, integer=False):
    """About `count` tick values from lo to hi (whole numbers when `integer`)."""
    ticks = np.linspace(lo, hi, count)
    return np.unique(np.round(ticks)) if integer else ticks


def _panel(title, xs, ys, colour, y_range=None):
    """One line chart (white background, grid, labelled axes) of ys against xs."""
    w, h = _PANEL_WH
    left, right, top, bottom = _MARGIN
    image = np.full((h, w, 3), 255, np.uint8)
    cv2.putText(image, title, (left, top - 6), _FONT, 0.5, _INK, 1, cv2.LINE_AA)
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    x_lo, x_hi = (xs.min(), xs.max()) if len(xs) else (0.0, 1.0)
    x_hi = x_hi if x_hi > x_lo else x_lo + 1
    y_lo, y_hi = y_range or ((ys.min(), ys.max()) if len(ys) else (0.0, 1.0))
    y_hi = y_hi if y_hi > y_lo else y_lo + 1e-6 + abs(y_lo) * 0.1

    def to_px(x, y):
        return (int(round(left + (x - x_lo) / (x_hi - x_lo) * (w - left - right))),
                int(round(h - bottom - (y - y_lo) / (y_hi - y_lo) * (h - top - bottom))))

    for y in _ticks(y_lo, y_hi):
        p = to_px(x_lo, y)
        cv2.line(image, (left, p[1]), (w - right, p[1]), _GRID, 1)
        cv2.putText(image, f"{y:.3g}", (4, p[1] + 4), _FONT, 0.38, _INK, 1, cv2.LINE_AA)
    for x in _ticks(x_lo, x_hi, min(6, int(x_hi - x_lo) + 1), integer=True):
        p = to_px(x, y_lo)
        cv2.putText(image, f"{x:.0f}", (p[0] - 8, h - bottom + 16), _FONT, 0.38, _INK, 1, cv2.LINE_AA)
    cv2.rectangle(image, (left, top), (w - right, h - bottom), _INK, 1)
    cv2.putText(image, 'epoch', (w // 2 - 18, h - 8), _FONT, 0.42, _INK, 1, cv2.LINE_AA)
    points = [to_px(x, y) for x, y in zip(xs, ys)]
    if len(points) > 1:
        cv2.polylines(image, [np.array(points, np.int32)], False, colour, 2, cv2.LINE_AA)
    for p in points if len(points) <= 40 else []:  # markers only while they stay apart
        cv2.circle(image, p, 3, colour, -1, cv2.LINE_AA)
    return image


def draw_curves(path, history, metric='AP', title='validation AP', y_range=(0.0, 1.0)):
    """Write `path` (PNG): the epoch loss beside the validation `metric`; history rows: epoch, loss, metric."""
    loss = [(r['epoch'], r['loss']) for r in history if r.get('loss') is not None]
    val = [(r['epoch'], r[metric]) for r in history if r.get(metric) is not None]
    left = _panel('training loss (epoch mean)', *(zip(*loss) if loss else ([], [])), (200, 90, 30))
    right = _panel(title, *(zip(*val) if val else ([], [])), (40, 150, 40), y_range=y_range)
    cv2.imwrite(str(path), np.hstack([left, right]))
