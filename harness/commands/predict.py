"""``harness predict RUN_ID ROWS.csv``: the classes a logged run's network predicts, one per row."""

HELP = "predict classes of CSV rows with a logged run's network"


def add_parser(commands):
    predict = commands.add_parser(
        "predict",
        help=HELP,
        description="Load a run's network (weights.npz, no pickle) and print the predicted class of every CSV row.",
    )
    predict.add_argument(
        "run_id", metavar="RUN_ID|EXPORT.zip", help="a harness run that kept its weights, or its `harness export` file"
    )
    predict.add_argument("csv", help="rows of raw features (a label column, if present, is ignored)")
    predict.add_argument(
        "--label-column", default="label", metavar="NAME", help="the column to ignore if present (default: label)"
    )
    predict.add_argument(
        "--json",
        action="store_true",
        help="print the predictions as one JSON document on stdout: source (the RUN_ID or file given), run_id "
        "(the run the network comes from; an export's as its run.json names it) and predictions, each in the "
        "labels' own type (integers stay integers)",
    )
    return predict


def run(args):
    from ..common.errors import printable
    from ..records.store import resolve_tracking_uri
    from ..reproduce.prediction import model_of, open_logged, read_rows, typed_classes

    logged = open_logged(args.run_id, resolve_tracking_uri(args.tracking_uri))
    model = model_of(logged)
    classes = typed_classes(model.classes)
    labels = [classes[i] for i in model.predict_indices(read_rows(args.csv, args.label_column, model))]
    if args.json:
        from ..common.output import emit_json

        emit_json({"source": args.run_id, "run_id": logged.run["run_id"], "predictions": labels})
        return 0
    for label in labels:  # a class name is the training data's: one line each, whatever it holds
        print(printable(str(label)))
    return 0
