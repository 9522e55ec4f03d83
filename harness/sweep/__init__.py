"""Running a study with Optuna: storages, each condition's studies and trials, liveness and
pruning, the studies made before workers start, workers, the lifecycle of one ``harness sweep``, and
keeping Optuna's trials and MLflow's runs in agreement (``reconcile``, ``repair``, ``audit``).
"""
