"""The pyfunc model MLflow builds from code (no pickle): ``mlflow.models.set_model`` on a wrapper of
``harness_model.Network``. Its artifacts: the run's ``config.json`` and ``weights.npz``."""

import json

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel


class HarnessClassifier(PythonModel):
    def load_context(self, context):
        from harness_model import Network

        with open(context.artifacts["config"], encoding="utf-8") as fh:
            activation = json.load(fh).get("activation", "relu")
        self.network = Network(context.artifacts["weights"], activation)

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> list:
        rows = model_input.to_numpy(dtype=np.float64) if hasattr(model_input, "to_numpy") else model_input
        return self.network.predict(rows)


mlflow.models.set_model(HarnessClassifier())
