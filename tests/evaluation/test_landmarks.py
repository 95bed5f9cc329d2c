"""Landmark metrics (PCK, EPE, MRE, SDR) on constructed errors with known answers."""
import numpy as np
import pytest

from litehrnet.evaluation import bbox_size, epe, mre, pck, sdr

# 2 instances x 3 joints; errors along x of (3, 6, 100) and (9, 12, 15) pixels; joint 2 of instance 0 hidden.
GT = np.zeros((2, 3, 2))
PRED = GT + np.array([[[3, 0], [6, 0], [100, 0]], [[9, 0], [12, 0], [15, 0]]], dtype=np.float64)
VISIBLE = np.array([[True, True, False], [True, True, True]])


def test_bbox_size_is_the_longer_side():
    np.testing.assert_allclose(bbox_size([[5, 5, 100, 50], [0, 0, 30, 60]]), [100, 60])


def test_pck_averages_per_joint():
    norm = np.array([100.0, 100.0])
    assert pck(PRED, GT, VISIBLE, norm, 0.05) == pytest.approx((1 / 2 + 0 + 0) / 3)  # 3 px only
    assert pck(PRED, GT, VISIBLE, norm, 0.1) == pytest.approx((1 + 1 / 2 + 0) / 3)   # 3, 9, 6 px
    assert pck(PRED, GT, VISIBLE, norm, 0.2) == pytest.approx(1.0)                   # hidden 100 px ignored
    assert pck(PRED, GT, VISIBLE, norm, 0.03) == 0.0                                 # strict <
    assert pck(PRED, GT, VISIBLE, [100.0, 0.0], 0.05) == pytest.approx(1 / 2)        # norm 0: row left out


def test_epe_and_mre():
    assert epe(PRED, GT, VISIBLE) == pytest.approx((3 + 6 + 9 + 12 + 15) / 5)
    assert mre(PRED, GT, VISIBLE) == epe(PRED, GT, VISIBLE)
    assert mre(PRED, GT, VISIBLE, spacing=0.5) == pytest.approx(4.5)
    assert mre(PRED, GT, VISIBLE, spacing=[1.0, 0.0]) == pytest.approx((3 + 6) / 5)
    assert epe(PRED, GT, np.zeros_like(VISIBLE)) == 0.0


def test_sdr():
    assert sdr(PRED, GT, VISIBLE, [6, 12, 24]) == pytest.approx({6: 2 / 5, 12: 4 / 5, 24: 1.0})  # <= thr
    assert sdr(PRED, GT, VISIBLE, [2, 4.5], spacing=0.5) == pytest.approx({2: 1 / 5, 4.5: 3 / 5})  # mm
