"""MPII PCKh on a synthetic mpii_gt_val.mat whose answer is known by construction."""
import numpy as np
import pytest
from scipy.io import savemat

from litehrnet.evaluation import pckh

# Radial error of each joint in head sizes, the same for the 4 persons unless noted:
# head 0.05 (right at 0.1 too), neck 0.105 (right at 0.11, not at 0.10), wrists 0.7 (wrong),
# pelvis/thorax 0.7 (left out of the means), every other joint 0.3 (right at 0.5 only);
# r_ankle is 0.7 for person 0; l_ankle is missing (and far off) for persons 0 and 1.
ERRORS = np.full((16, 4), 0.3)
ERRORS[9], ERRORS[8], ERRORS[[10, 15]], ERRORS[[6, 7]], ERRORS[0, 0] = 0.05, 0.105, 0.7, 0.7, 0.7
ERRORS[5, :2] = 9.0
MISSING = np.zeros((16, 4), dtype=np.int64)
MISSING[5, :2] = 1


@pytest.fixture
def case(tmp_path):
    """(0-based predictions (4, 16, 3), path of the .mat) with head boxes of different sizes."""
    rng = np.random.default_rng(0)
    sides = np.array([1.0, 2.0, 3.0, 4.0])  # head box 3k x 4k: diagonal 5k, head size 3k
    corner = rng.uniform(0, 100, (2, 4))
    headboxes = np.stack([corner, corner + [3 * sides, 4 * sides]])  # (2, 2, N)
    pos_gt = rng.uniform(100, 400, (16, 2, 4))
    angle = rng.uniform(0, 2 * np.pi, (16, 4))
    shift = (ERRORS * 3 * sides)[:, None] * np.stack([np.cos(angle), np.sin(angle)], 1)  # (16, 2, N)
    path = tmp_path / 'mpii_gt_val.mat'
    savemat(path, dict(jnt_missing=MISSING, pos_gt_src=pos_gt, headboxes_src=headboxes))
    preds = np.transpose(pos_gt + shift - 1, (2, 0, 1))
    return np.concatenate([preds, np.ones((4, 16, 1))], -1), path


def test_pckh_known_answer(case):
    preds, path = case
    result = pckh(preds, path)
    expected = dict(Head=100, Shoulder=100, Elbow=100, Wrist=0, Hip=100, Knee=100, Ankle=(75 + 100) / 2)
    for name, value in expected.items():
        assert result[name] == pytest.approx(value), name
    # 54 joints counted (13 x 4 + 2), 45 right at 0.5; at 0.10 only the 4 heads, at 0.11 heads and necks
    assert result['Mean'] == pytest.approx(100 * 45 / 54)
    assert result['Mean@0.1'] == pytest.approx(100 * 4 / 54)
    assert result['Mean@0.1 threshold'] == '0.1'
    official = pckh(preds, path, mean01_thr=0.11)
    assert official['Mean@0.1'] == pytest.approx(100 * 8 / 54)
    assert official['Mean@0.1 threshold'].startswith('0.11')


def test_pckh_errors(case, tmp_path):
    preds, path = case
    with pytest.raises(ValueError, match='expected'):
        pckh(preds[:3], path)
    missing = tmp_path / 'absent.mat'
    with pytest.raises(ValueError, match='not found') as err:
        pckh(preds, missing)
    assert str(missing) in str(err.value)
