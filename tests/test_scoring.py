"""Scores from decisions: which metrics need only the predictions."""

import pytest

from fastsearchlight.scoring import uses_predictions_only


@pytest.mark.parametrize(
    "metrics, expected",
    [(("accuracy",), True), (("balanced_accuracy", "f1:1"), True), (("accuracy", "roc_auc"), False),
     (("neg_log_loss",), False)],
)  # fmt: skip
def test_only_prediction_metrics_allow_bounded_decisions(metrics, expected):
    assert uses_predictions_only(metrics) == expected
