"""The quickstart study written as a user would without the harness: scikit-learn + Optuna + MLflow.

Same 4 conditions (MSE vs cross-entropy x plain SGD vs momentum 0.9) on digits, 64 ReLU hidden units,
batch 32, the same search (lr log-uniform in [1e-3, 10], epochs in [5, 60]), TPE (seed 0) with the
median pruner (5 startup trials, 3 warm-up epochs) on validation accuracy per epoch, one nested MLflow
run per trial with its metrics per epoch (train loss and validation accuracy; with ``--lean``, also the
validation loss: the set the harness records for a search trial), then 5 confirmation seeds of each
condition's best. A squared loss is MLPRegressor on one-hot targets (scikit-learn has no MSE
classifier). Used by ``bench_vs_plain.py``; runnable alone:

    .venv/bin/python benchmarks/plain_sweep.py --tracking-uri sqlite:///plain/mlflow.db --trials 16
"""

import argparse
import warnings

import mlflow
import numpy as np
import optuna
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import log_loss
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.preprocessing import StandardScaler

CONDITIONS = {
    "mse-sgd": ("mse", 0.0),
    "mse-momentum": ("mse", 0.9),
    "cross_entropy-sgd": ("cross_entropy", 0.0),
    "cross_entropy-momentum": ("cross_entropy", 0.9),
}


def load():
    x, y = load_digits(return_X_y=True)
    x_train, x_rest, y_train, y_rest = train_test_split(x, y, train_size=0.6, stratify=y, random_state=0)
    x_val, x_test, y_val, y_test = train_test_split(x_rest, y_rest, train_size=0.5, stratify=y_rest, random_state=0)
    scaler = StandardScaler().fit(x_train)
    return [scaler.transform(x_train), y_train, scaler.transform(x_val), y_val, scaler.transform(x_test), y_test]


def make_model(loss, momentum, lr, seed):
    settings = dict(
        hidden_layer_sizes=(64,),
        activation="relu",
        solver="sgd",
        learning_rate_init=lr,
        momentum=momentum,
        nesterovs_momentum=False,
        batch_size=32,
        alpha=0.0,
        random_state=seed,
    )
    return MLPClassifier(**settings) if loss == "cross_entropy" else MLPRegressor(**settings)


def fit_epoch(model, loss, x, y):
    if loss == "cross_entropy":
        model.partial_fit(x, y, classes=np.arange(10))
    else:
        model.partial_fit(x, np.eye(10)[y])


def accuracy(model, x, y):
    scores = model.predict_proba(x) if isinstance(model, MLPClassifier) else model.predict(x)
    return float((np.asarray(scores).argmax(axis=1) == y).mean())


def validation_loss(model, loss, x, y):
    """The trained loss on validation rows: cross-entropy of the probabilities, or the squared error
    against one-hot targets (as MLPRegressor's loss_, which halves it)."""
    if loss == "cross_entropy":
        return float(log_loss(y, model.predict_proba(x), labels=np.arange(10)))
    return float(((model.predict(x) - np.eye(10)[y]) ** 2).mean() / 2)


def train(loss, momentum, lr, epochs, seed, data, trial=None, lean=False):
    """Train epoch by epoch, logging to the active MLflow run; returns (val accuracy, epochs, model)."""
    x_train, y_train, x_val, y_val = data[:4]
    model = make_model(loss, momentum, lr, seed)
    acc = 0.0
    for epoch in range(1, epochs + 1):
        try:
            fit_epoch(model, loss, x_train, y_train)
            acc = accuracy(model, x_val, y_val)
        except ValueError:  # the loss went to NaN/inf: scikit-learn refuses to go on
            mlflow.set_tag("diverged", epoch)
            mlflow.log_metric("epochs_run", epoch)
            return 0.0, epoch, None
        mlflow.log_metric("train_loss", model.loss_, step=epoch)
        mlflow.log_metric("val_accuracy", acc, step=epoch)
        if lean:
            mlflow.log_metric(f"val_{loss}", validation_loss(model, loss, x_val, y_val), step=epoch)
        if trial is not None:
            trial.report(acc, epoch)
            if trial.should_prune():
                mlflow.log_metric("epochs_run", epoch)
                raise optuna.TrialPruned()
    mlflow.log_metric("epochs_run", epochs)
    return acc, epochs, model


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--lean", action="store_true", help="log the validation loss per epoch too")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    mlflow.set_tracking_uri(args.tracking_uri)
    mlflow.set_experiment("quickstart")
    data = load()
    for name, (loss, momentum) in CONDITIONS.items():
        with mlflow.start_run(run_name=name):

            def objective(trial):
                lr = trial.suggest_float("lr", 1e-3, 10.0, log=True)
                epochs = trial.suggest_int("epochs", 5, 60)
                with mlflow.start_run(run_name=f"{name}-trial-{trial.number}", nested=True):
                    mlflow.log_params({"loss": loss, "momentum": momentum, "lr": lr, "epochs": epochs})
                    acc, _, _ = train(loss, momentum, lr, epochs, trial.number, data, trial, args.lean)
                return acc

            study = optuna.create_study(
                direction="maximize",
                sampler=optuna.samplers.TPESampler(seed=0),
                pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=3),
            )
            study.optimize(objective, n_trials=args.trials)
            best = study.best_params
            mlflow.log_params({f"best_{k}": v for k, v in best.items()})
            tests = []
            for seed in range(1000, 1000 + args.seeds):
                with mlflow.start_run(run_name=f"{name}-seed-{seed}", nested=True):
                    mlflow.log_params({"loss": loss, "momentum": momentum, **best, "seed": seed})
                    _, _, model = train(loss, momentum, best["lr"], best["epochs"], seed, data, lean=args.lean)
                    test = accuracy(model, data[4], data[5]) if model is not None else 0.0
                    mlflow.log_metric("test_accuracy", test)
                    tests.append(test)
            mlflow.log_metric("test_accuracy_mean", float(np.mean(tests)))
            print(f"{name}: best {best}, test accuracy {np.mean(tests):.4f}")


if __name__ == "__main__":
    main()
