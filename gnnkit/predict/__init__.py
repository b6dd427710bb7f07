"""gnnkit.predict: predictions on new molecules from a trained run's ``best_model.pt``.

The implementation lives in :mod:`gnnkit.predict.predictor`; its public names are imported here,
so ``from gnnkit.predict import load_predictor`` is the one spelling.
"""

from gnnkit.predict.predictor import (
    GEOMETRIES,
    Prediction,
    Predictor,
    geometry_text,
    load_predictor,
    predictor_card,
    regression_errors,
)

__all__ = [
    "load_predictor",
    "Predictor",
    "Prediction",
    "predictor_card",
    "regression_errors",
    "geometry_text",
    "GEOMETRIES",
]
