"""Scores from decisions: which predictions decisions known to within a bound settle."""

import numpy as np
import pytest

from fastsearchlight.scoring import certain_predictions, predictions, uses_predictions_only


def test_two_class_predictions_are_certain_when_every_decision_clears_its_bound():
    decisions = np.array([[0.5, -0.3], [0.5, -0.05], [0.0, 1.0], [1e-12, -1.0]])
    bounds = np.array([0.1, 0.1, 0.0, 1e-12])
    # the second sphere's -0.05 and the fourth's 1e-12 are within their bounds of 0; an
    # exact 0 is never settled (its class depends on the exact value's sign)
    np.testing.assert_array_equal(certain_predictions(decisions, bounds, 2), [True, False, False, False])


def test_multi_class_predictions_are_certain_when_one_class_stays_largest():
    # one sphere, one test sample per row of classes
    cases = [
        ([1.0, 0.5, 0.2], [0.1, 0.1, 0.1], True),  # 0.9 > 0.6
        ([1.0, 0.85, 0.2], [0.1, 0.1, 0.1], False),  # 0.9 < 0.95: the second may be largest
        ([1.0, 0.85, 0.2], [0.0, 0.1, 0.0], True),  # only the second is uncertain: 1.0 > 0.95
        ([1.0, 1.0, 0.0], [0.0, 0.0, 0.0], False),  # a tie: argmax picks by position, not proven
        ([0.2, 0.3, 0.9], [0.0, 0.7, 0.0], False),  # the middle class's interval reaches 1.0
    ]
    for decision, bound, expected in cases:
        got = certain_predictions(np.array([[decision]]), np.array([bound]), 3)
        assert got.tolist() == [expected], (decision, bound)


def test_certain_predictions_take_leading_dimensions_and_agree_with_interval_checks():
    """Random decisions and bounds, (spheres, label vectors, test samples, classes): the
    result equals the definition (the argmax's lower end above every other upper end)."""
    rng = np.random.default_rng(0)
    decisions = rng.standard_normal((50, 3, 4, 4))
    bounds = rng.uniform(0, 0.3, (50, 3, 4))
    got = certain_predictions(decisions, bounds, 4)
    assert got.shape == (50, 3) and got.any() and not got.all()
    top = predictions(decisions, 4)
    for s, k in np.ndindex(50, 3):
        ok = True
        for t in range(4):
            c = top[s, k, t]
            low = decisions[s, k, t, c] - bounds[s, k, c]
            others = [decisions[s, k, t, o] + bounds[s, k, o] for o in range(4) if o != c]
            ok &= low > max(others)
        assert got[s, k] == ok


@pytest.mark.parametrize(
    "metrics, expected",
    [(("accuracy",), True), (("balanced_accuracy", "f1:1"), True), (("accuracy", "roc_auc"), False),
     (("neg_log_loss",), False)],
)  # fmt: skip
def test_only_prediction_metrics_allow_bounded_decisions(metrics, expected):
    assert uses_predictions_only(metrics) == expected
