"""``harness train``: one run from flags or a TOML config, recorded in MLflow."""

import argparse
import os
import sys

from ..common.output import add_quiet_flag

HELP = "train one network and record it as an MLflow run"
FINAL_KEYS = ("val_accuracy", "val_cross_entropy", "test_accuracy", "test_cross_entropy", "test_mse")
FLAGS = {
    "dataset": (
        str,
        "digits (default), iris, wine, breast_cancer, moons, circles, blobs, classification, mnist1d, csv",
    ),
    "csv": (str, "a CSV file of numeric features and a label column (implies --dataset csv)"),
    "label_column": (str, "the CSV's label column (default: label)"),
    "n_samples": (int, "rows of a generated data set (moons, circles, blobs, classification), 10..10^7"),
    "val_fraction": (float, "share of rows held out for validation, in (0, 0.5) (default 0.2)"),
    "test_fraction": (float, "share of rows held out for the test, in (0, 0.5) (default 0.2)"),
    "data_seed": (int, "seed of the split, of generated data and of label noise (default 0)"),
    "label_noise": (float, "share of training (and validation) labels made wrong, in [0, 1) (default 0)"),
    "noise_kind": (str, "symmetric (default: any other class) or pairwise (class k becomes k+1)"),
    "imbalance": (float, "most / fewest training rows per class, in [1, 1000] (default 1: as the data set has)"),
    "activation": (str, "relu (default), tanh, sigmoid"),
    "loss": (
        str,
        "cross_entropy (default), mse (on softmax probabilities), mse_logits, mae (on probabilities), gce, "
        "or your own as module:Class",
    ),
    "gce_q": (float, "gce: its q in (0, 1] (default 0.7; near 0 is cross-entropy, 1 is MAE)"),
    "optimizer": (str, "sgd (default), adam, rmsprop, adagrad, or your own as module:Class"),
    "lr": (float, "learning rate > 0 (default 0.05)"),
    "momentum": (float, "SGD momentum in [0, 1) (default 0.9)"),
    "weight_decay": (float, "L2 weight decay >= 0 on the weights (default 0)"),
    "epochs": (int, "epochs, 1..100000 (default 30)"),
    "schedule": (str, "learning-rate schedule: constant (default), step, cosine, invscaling"),
    "step_size": (int, "step schedule: epochs between decays (default 10)"),
    "gamma": (float, "step schedule: decay factor in (0, 1] (default 0.5)"),
    "power_t": (float, "invscaling schedule: exponent >= 0 (default 0.5)"),
    "warmup_epochs": (int, "epochs of linear warm-up >= 0 (default 0)"),
    "beta1": (float, "Adam: first-moment decay in [0, 1) (default 0.9)"),
    "beta2": (float, "Adam: second-moment decay in [0, 1) (default 0.999)"),
    "rho": (float, "RMSprop: decay in [0, 1) (default 0.9)"),
    "eps": (float, "Adam/RMSprop/Adagrad: epsilon > 0 (default 1e-8)"),
    "seed": (int, "seed of the initial weights and the batch order, 0..2^32-1 (default 0)"),
    "dtype": (str, "float64 (default) or float32"),
    "blas_threads": (int, "BLAS threads, 1..256 (default 1: faster at these sizes)"),
}
"""flag -> (type, help) for the flags that map one to one onto TrainConfig."""
SWITCHES = {
    "nesterov": "SGD: Nesterov momentum (default off)",
    "clean_validation": "with --label-noise: keep the validation labels clean (default: noisy like training)",
    "shuffle": "shuffle the batches every epoch (default on)",
}
"""--NAME / --no-NAME -> help, for the on-off settings."""


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


def _own_setting(text):
    """``NAME=VALUE`` of ``--set``: a custom method's own setting (checked as a config's ``method_settings``)."""
    name, equals, value = text.partition("=")
    try:
        number = float(value)
    except ValueError:
        number = None
    if not equals or not name or number is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE with a number (e.g. focal_gamma=1.5)")
    return name.strip(), number


def add_parser(commands):
    train = commands.add_parser(
        "train",
        help=HELP,
        description="Train one network and record it as an MLflow "
        "run. Settings come from --config (TOML) and flags; flags win.",
    )
    train.add_argument("--config", metavar="FILE", help="TOML file of settings (keys as the flags, with underscores)")
    for name, (kind, text) in FLAGS.items():
        train.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            type=kind,
            default=None,
            help=text,
            metavar=name.upper() if kind is str else kind.__name__.upper(),
        )
    train.add_argument(
        "--hidden",
        type=_hidden,
        default=None,
        metavar="SIZES",
        help="hidden layer sizes, e.g. 64 or 128,64 (default 64)",
    )
    train.add_argument(
        "--batch-size",
        type=_batch_size,
        default=None,
        metavar="N",
        help="mini-batch size: an integer, or 'full' (default 32)",
    )
    for name, text in SWITCHES.items():
        flag = "--" + name.replace("_", "-")
        train.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=text)
    train.add_argument(
        "--set",
        dest="own_settings",
        type=_own_setting,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting your own loss or optimizer declares, e.g. --set focal_gamma=1.5 (repeatable)",
    )
    train.add_argument(
        "--experiment",
        default=None,
        metavar="NAME",
        help="MLflow experiment name (default: $MLFLOW_EXPERIMENT_NAME, else train)",
    )
    train.add_argument(
        "--json", action="store_true", help="print one JSON document on stdout (the human-readable lines go to stderr)"
    )
    add_quiet_flag(train)
    return train


def config_from_args(args):
    from ..common.errors import ConfigError
    from ..engine.config import check_methods, make_config
    from ..engine.methods import add_search_folder

    named = (*FLAGS, "hidden", "batch_size", *SWITCHES)
    flags = {name: getattr(args, name) for name in named if getattr(args, name) is not None}
    values = {}
    if args.config:
        add_search_folder(os.path.dirname(os.path.abspath(args.config)))
        values.update(_file_settings(args.config, flags))
    values.update(flags)
    own = dict(values.pop("method_settings", {}))
    given = set()
    for name, value in args.own_settings:
        if name in given:
            raise ConfigError(f"--set {name} = {value:g} is not allowed; {name} is given twice")
        given.add(name)
        own[name] = value
    if own:
        values["method_settings"] = own
    if values.get("csv") and "dataset" not in values:
        values["dataset"] = "csv"
    config = make_config(values)
    check_methods(config, args.config or "")
    return config


def _file_settings(path, flags):
    """A ``--config`` file's settings: a key that is no harness setting is a custom method's own (into
    ``method_settings``) when the file or the flags name a custom loss or optimizer; its ``csv`` from the
    file's folder; checked, naming the file."""
    from ..engine.config import FIELD_TYPES, make_config
    from ..engine.methods import is_custom
    from ..studies.parse import read_toml
    from ..studies.paths import CONFIG_RULE, PATH_KEYS, checked

    values = read_toml(path)
    for key in PATH_KEYS:  # as in a study: the file runs from any folder (a --csv flag is the shell's)
        if key in values:
            values[key] = checked(path, key, values[key], CONFIG_RULE)
    methods = {k: v for k, v in {**values, **flags}.items() if k in ("loss", "optimizer")}
    if any(isinstance(name, str) and is_custom(name) for name in methods.values()):
        own = {k: values.pop(k) for k in list(values) if k not in FIELD_TYPES}
        written = values.get("method_settings", {})
        if own and isinstance(written, dict):
            values["method_settings"] = {**written, **own}
    make_config({**values, **methods}, path)  # name the file when it is the file that is wrong
    return values


def _progress(total, enabled):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="epoch", file=sys.stderr, leave=False)


def run(args):
    from ..common.errors import ConfigError

    config = config_from_args(args)
    if args.experiment is None:
        args.experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME") or "train"
    if not args.experiment.strip() or "\n" in args.experiment:
        raise ConfigError(f"--experiment = {args.experiment!r} is not allowed; give a name (one line)")
    from ..records.recorder import RecorderProcess
    from ..records.store import check_server, check_writable, resolve_tracking_uri

    uri = resolve_tracking_uri(args.tracking_uri)
    check_server(uri)
    check_writable(uri)
    with RecorderProcess(uri) as recorder:  # imports mlflow in parallel with the data
        from ..engine.data import load_split
        from ..engine.training import check_memory
        from ..records.runs import result_json, train_and_record

        split = load_split(config)  # bad data fails here, before any run exists
        check_memory(config, split)
        bar = _progress(config.epochs, sys.stderr.isatty() and not args.quiet)

        def show(epoch, metrics):
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{metrics['train_loss']:.4f}", val_acc=f"{metrics['val_accuracy']:.3f}")

        try:
            run_id, result, timings = train_and_record(config, split, recorder, args.experiment, on_epoch=show)
        finally:
            if bar is not None:
                bar.close()
    if not args.quiet:
        _report(run_id, config, result, uri, args.experiment, sys.stderr if args.json else sys.stdout)
    if args.json:
        print(result_json(run_id, result, timings))
    return 0


def _report(run_id, config, result, uri, experiment, out):
    """The run, how it ended and its final figures, for a person to read."""
    from ..common.urls import redact

    print(f"run {run_id} ({config.run_name()}): {result.status} after {result.epochs_run} epochs", file=out)
    if result.status == "diverged":
        print(f"  diverged in epoch {result.diverged_epoch}; last finite loss {result.last_finite_loss}", file=out)
    for key in FINAL_KEYS:
        if key in result.final:
            print(f"  {key:<20} {result.final[key]:.4f}", file=out)
    print(f"  tracking uri: {redact(uri)}   experiment: {experiment}", file=out)
