"""A logged run's network as an MLflow pyfunc model ("models from code": this file, not a pickle).

``mlflow.pyfunc.load_model("runs:/<run id>/model").predict(frame)`` returns the class names
``harness predict`` prints for the same rows; ``mlflow models serve -m runs:/<run id>/model
--env-manager local`` serves it. The weights travel as the model's ``weights.npz`` artifact and are read
without pickle, by the same checked loader as ``harness predict``.
"""

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel


class HarnessClassifier(PythonModel):
    def load_context(self, context):
        from harness.records.weights import LoggedModel, parse_config, parse_weights

        with open(context.artifacts["config"], "rb") as fh:
            config = parse_config(fh.read(), "model config.json")
        with open(context.artifacts["weights"], "rb") as fh:
            arrays = parse_weights(fh.read(), "model weights.npz")
        self.model = LoggedModel(config, arrays)

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> list[str]:
        rows = model_input.to_numpy(dtype=np.float64) if isinstance(model_input, pd.DataFrame) else model_input
        return self.model.predict(np.asarray(rows, dtype=np.float64))


mlflow.models.set_model(HarnessClassifier())
