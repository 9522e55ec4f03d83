"""``harness train``: one run from flags or a TOML config, recorded in MLflow."""
import sys
import tomllib

from ..config import make_config
from ..errors import ConfigError

FINAL_KEYS = ("val_accuracy", "val_cross_entropy", "test_accuracy", "test_cross_entropy", "test_mse")


def load_toml(path):
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def config_from_args(args):
    from ..cli import TRAIN_FLAGS
    values, source = {}, ""
    if args.config:
        values.update(load_toml(args.config))
        source = args.config
        make_config(values, source)  # name the file when it is the file that is wrong
    flags = {name: getattr(args, name) for name in (*TRAIN_FLAGS, "hidden", "batch_size", "nesterov",
                                                       "shuffle")}
    values.update({k: v for k, v in flags.items() if v is not None})
    if values.get("csv") and "dataset" not in values:
        values["dataset"] = "csv"
    return make_config(values)


def _progress(total, enabled):
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=total, unit="epoch", file=sys.stderr, leave=False)


def run_train(args):
    config = config_from_args(args)
    from ..data import load_split
    from ..recorded import result_json, train_and_record
    from ..tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(args.tracking_uri)
    split = load_split(config)  # bad data fails here, before any run exists
    bar = _progress(config.epochs, sys.stderr.isatty())

    def show(epoch, metrics):
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{metrics['train_loss']:.4f}", val_acc=f"{metrics['val_accuracy']:.3f}")

    try:
        run_id, result, timings = train_and_record(config, split, uri, args.experiment, on_epoch=show)
    finally:
        if bar is not None:
            bar.close()
    print(f"run {run_id} ({config.run_name()}): {result.status} after {result.epochs_run} epochs")
    if result.status == "diverged":
        print(f"  diverged in epoch {result.diverged_epoch}; last finite loss {result.last_finite_loss}")
    for key in FINAL_KEYS:
        if key in result.final:
            print(f"  {key:<20} {result.final[key]:.4f}")
    print(f"  tracking uri: {uri}   experiment: {args.experiment}")
    if args.json:
        print(result_json(run_id, result, timings))
    return 0
