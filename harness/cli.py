"""Command line: parses flags, wires the pieces, and is the one place that maps errors to exit codes.

Heavy modules (mlflow, scikit-learn, optuna) are imported inside the commands, so ``harness --help``
stays fast.
"""
import argparse
import gc
import os
import sys

from .errors import HarnessError

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

# flag -> config field, for the flags that map one to one onto TrainConfig.
TRAIN_FLAGS = {
    "dataset": str, "csv": str, "label_column": str, "n_samples": int, "val_fraction": float,
    "test_fraction": float, "data_seed": int, "activation": str, "loss": str, "optimizer": str,
    "lr": float, "momentum": float, "weight_decay": float, "epochs": int, "schedule": str,
    "step_size": int, "gamma": float, "power_t": float, "warmup_epochs": int, "beta1": float,
    "beta2": float, "rho": float, "eps": float, "seed": int, "dtype": str, "blas_threads": int,
}


def _batch_size(text):
    if text == "full":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer or 'full'") from None


def _hidden(text):
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None


def _add_tracking_flags(parser):
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, "
                        "else sqlite:///./mlruns/mlflow.db)")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="harness", description="Train small numpy networks under different losses and optimizers; "
        "record every run in MLflow.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train one network and record it as an MLflow run",
                                description="Train one network and record it as an MLflow run. "
                                "Settings come from --config (TOML) and flags; flags win.")
    train.add_argument("--config", help="TOML file of settings (keys as the flags, with underscores)")
    for name, kind in TRAIN_FLAGS.items():
        train.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, default=None)
    train.add_argument("--hidden", type=_hidden, default=None, help="hidden layer sizes, e.g. 64 or 128,64")
    train.add_argument("--batch-size", type=_batch_size, default=None, help="integer, or 'full'")
    train.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None)
    train.add_argument("--shuffle", action=argparse.BooleanOptionalAction, default=None)
    train.add_argument("--experiment", default="train", help="MLflow experiment name (default: train)")
    train.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    _add_tracking_flags(train)
    train.set_defaults(handler=_train_command)

    sweep = commands.add_parser("sweep", help="run a study: tune lr/epochs per condition, confirm on test",
                                description="Run a study file: for every condition, Optuna searches the "
                                "nuisance settings with the same budget, then the best settings are "
                                "retrained with new seeds and scored on the test split. Running the same "
                                "command again resumes.")
    sweep.add_argument("study_file", help="a study TOML file, e.g. studies/quickstart.toml")
    sweep.add_argument("--trials", type=int, help="search trials per condition (overrides the file)")
    sweep.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    sweep.add_argument("--storage", default=os.environ.get("HARNESS_OPTUNA_STORAGE"),
                       help="Optuna storage: a journal file path (default mlruns/optuna/<study>.journal) or an "
                       "RDB URL such as postgresql+psycopg://USER@HOST:5432/DB shared by workers on many "
                       "machines (default: $HARNESS_OPTUNA_STORAGE; passwords from $PGPASSWORD or ~/.pgpass)")
    sweep.add_argument("--heartbeat", type=int, default=10, metavar="SECONDS",
                       help="RDB storages: seconds between Optuna heartbeats (default 10); a worker silent for "
                       "3 heartbeats is presumed dead, its trials are failed and run again")
    sweep.add_argument("--epochs", type=int, help="fix the epoch count instead of searching it (smoke runs)")
    sweep.add_argument("--confirm-seeds", type=int, help="confirmation seeds (overrides the file)")
    sweep.add_argument("--stack", type=int, help="trials trained together as one stack (default: the file's "
                       "budget.stack, else 8); 1 trains one model at a time")
    sweep.add_argument("--json", action="store_true", help="print the summary as JSON on the last line")
    _add_tracking_flags(sweep)
    sweep.set_defaults(handler=_sweep_command)

    again = commands.add_parser("reproduce", help="retrain a logged run and compare every curve",
                                description="Rebuild a run's configuration from what it logged, retrain, "
                                "compare every logged metric at every step; exit 0 when identical, 1 when not. "
                                "The reproduction is logged as a new run tagged reproduces=RUN_ID.")
    again.add_argument("run_id")
    _add_tracking_flags(again)
    again.set_defaults(handler=_reproduce_command)

    compare = commands.add_parser("compare", help="compare a study's conditions: table, paired differences, "
                                  "plots and an HTML report", description="Read a study's runs back from MLflow "
                                  "and compare its conditions. Plots go to --out and onto every condition's "
                                  "parent run as artifacts.")
    compare.add_argument("study", help="a study name, or its study file")
    compare.add_argument("--format", choices=("table", "csv", "markdown", "json"), default="table")
    compare.add_argument("--out", help="folder for the plots and report (default reports/<study>)")
    _add_tracking_flags(compare)
    compare.set_defaults(handler=_compare_command)

    predict = commands.add_parser("predict", help="predict classes of CSV rows with a logged run's network")
    predict.add_argument("run_id")
    predict.add_argument("csv", help="rows of raw features (a label column, if present, is ignored)")
    predict.add_argument("--label-column", default="label")
    _add_tracking_flags(predict)
    predict.set_defaults(handler=_predict_command)

    ui = commands.add_parser("ui", help="start the MLflow UI on the project's store",
                             description="Start the MLflow UI over the tracking store (default: ./mlruns), "
                             "bound to 127.0.0.1; Ctrl-C stops it.")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=5000)
    _add_tracking_flags(ui)
    ui.set_defaults(handler=_ui_command)
    return parser


def _predict_command(args):
    from .predict import load_logged_model, read_rows
    from .tracking import resolve_tracking_uri
    model = load_logged_model(args.run_id, resolve_tracking_uri(args.tracking_uri))
    for label in model.predict(read_rows(args.csv, args.label_column, model.n_features)):
        print(label)
    return 0


def _ui_command(args):
    from .tracking import resolve_tracking_uri
    from .ui import run_ui
    return run_ui(resolve_tracking_uri(args.tracking_uri), args.host, args.port)


def _compare_command(args):
    from .commands.compare import run_compare_command
    return run_compare_command(args)


def _reproduce_command(args):
    from .reproduce import reproduce
    from .tracking import resolve_tracking_uri
    return reproduce(args.run_id, resolve_tracking_uri(args.tracking_uri))


def _sweep_command(args):
    from .commands.sweep import run_sweep_command
    return run_sweep_command(args)


def _train_command(args):
    from .commands.train import run_train
    return run_train(args)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args) or 0
    except HarnessError as exc:
        print(f"harness {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"harness {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def run():
    """Console entry point."""
    code = main()
    # Tearing down mlflow's and pandas' object graphs at exit took 1.1 s of a 4.3 s command; frozen
    # objects are skipped by the final collections. Everything was written and closed by now.
    gc.freeze()
    sys.exit(code)
