"""Compare the conditions of a finished study from its MLflow records: table, paired differences, plots.

Everything is read back from the tracking store (pandas), so the report can be rebuilt on any machine
that sees the store. Confidence intervals are Student t intervals (95%): over the confirmation seeds
for each condition, and over the per-seed differences for each pair of conditions (the same seeds
trained both, so the comparison is paired).
"""
import base64
import html
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import HarnessError
from .summary import t_interval
from .tracking import HARNESS_TAG, open_client, study_runs, write_artifacts
from .train import epochs_to_target

PLOTS = ("curves_by_condition.png", "lr_sensitivity.png", "epochs_to_target.png")


def runs_frame(runs):
    rows = []
    for run in runs:
        tags = run.data.tags
        if tags.get(HARNESS_TAG) not in ("search", "confirm", "condition"):
            continue
        rows.append({"run_id": run.info.run_id, "start_time": run.info.start_time, "status": run.info.status,
                     "kind": tags[HARNESS_TAG], "best_search_trial": tags.get("best_search_trial"),
                     "condition": tags.get("condition"), "state": tags.get("state"),
                     "trial": int(tags["trial"]) if "trial" in tags else None,
                     "seed": int(tags["seed"]) if "seed" in tags else None,
                     **{f"param.{k}": v for k, v in run.data.params.items()},
                     **{f"metric.{k}": v for k, v in run.data.metrics.items()},
                     **{f"tag.{k}": v for k, v in tags.items() if k in ("objective", "direction",
                                                                       "target_accuracy", "optuna_storage")}})
    return pd.DataFrame(rows)


class Comparison:
    def __init__(self, study_name, uri):
        self.study_name, self.uri = study_name, uri
        self.client = open_client(uri)
        _, runs = study_runs(self.client, study_name)
        self.frame = runs_frame(runs)
        if self.frame.empty or not (self.frame["kind"] == "condition").any():
            raise HarnessError(f"study {study_name!r}: no sweep runs in {uri}; run `harness sweep` first")
        parents = self.frame[self.frame["kind"] == "condition"].sort_values(["start_time", "run_id"])
        first = parents.iloc[0]
        self.objective = first.get("tag.objective", "val_accuracy")
        self.direction = first.get("tag.direction", "maximize")
        self.target = float(first.get("tag.target_accuracy", 0.95))
        self.storage = first.get("tag.optuna_storage")
        self.parents = dict(zip(parents["condition"], parents["run_id"]))
        self.conditions = list(self.parents)  # in the order the sweep created them
        self._histories = {}

    def history(self, run_id, key):
        if (run_id, key) not in self._histories:
            points = self.client.get_metric_history(run_id, key)
            self._histories[(run_id, key)] = [m.value for m in sorted(points, key=lambda m: m.step)]
        return self._histories[(run_id, key)]

    def part(self, condition, kind):
        f = self.frame
        return f[(f["condition"] == condition) & (f["kind"] == kind)]

    def confirmed(self, condition):
        confirm = self.part(condition, "confirm")
        return confirm[confirm["state"] == "complete"].sort_values("seed")

    def epochs_to_target(self, run_id):
        return epochs_to_target({"val_accuracy": self.history(run_id, "val_accuracy")}, self.target)

    def table(self):
        rows = []
        objective = f"metric.{self.objective}"
        for condition in self.conditions:
            search = self.part(condition, "search")
            finished = search[search["state"].isin(["complete", "pruned", "diverged"])]
            n = len(finished)
            complete = finished[finished["state"] == "complete"]
            row = {"condition": condition, "trials": n,
                   "pruned_share": (finished["state"] == "pruned").mean() if n else math.nan,
                   "diverged_share": (finished["state"] == "diverged").mean() if n else math.nan}
            confirmed = self.confirmed(condition)
            if len(complete) and objective in complete:
                # the trial the confirmation runs retrained (ties broken as Optuna broke them)
                chosen = confirmed["best_search_trial"].dropna().astype(int).unique() if len(confirmed) else []
                match = complete[complete["trial"] == chosen[0]] if len(chosen) == 1 else complete.iloc[0:0]
                values = complete[objective].astype(float)
                best = match.iloc[0] if len(match) else \
                    complete.loc[values.idxmax() if self.direction == "maximize" else values.idxmin()]
                row.update({"best_lr": float(best["param.lr"]), "best_epochs": int(best["param.epochs"]),
                            f"best_{self.objective}": float(best[objective])})
            accuracies = confirmed["metric.test_accuracy"].astype(float).tolist() if len(confirmed) else []
            mean, low, high = t_interval(accuracies)
            reached = [self.epochs_to_target(r) for r in confirmed["run_id"]]
            hit = [e for e in reached if e is not None]
            row.update({"test_accuracy_mean": mean, "test_accuracy_ci_low": low, "test_accuracy_ci_high": high,
                        "seeds": len(accuracies),
                        "epochs_to_target_median": float(np.median(hit)) if hit else math.nan,
                        "target_reached": f"{len(hit)}/{len(reached)}"})
            rows.append(row)
        return pd.DataFrame(rows)

    def paired_differences(self):
        """Test-accuracy difference per pair of conditions over the seeds both confirmed."""
        by_condition = {c: dict(zip(self.confirmed(c)["seed"], self.confirmed(c)["metric.test_accuracy"]))
                        for c in self.conditions}
        rows = []
        for i, a in enumerate(self.conditions):
            for b in self.conditions[i + 1:]:
                seeds = sorted(set(by_condition[a]) & set(by_condition[b]))
                diffs = [by_condition[a][s] - by_condition[b][s] for s in seeds]
                mean, low, high = t_interval(diffs)
                rows.append({"a": a, "b": b, "seeds": len(seeds), "mean_difference": mean,
                             "ci_low": low, "ci_high": high,
                             "significant": bool(not math.isnan(low) and (low > 0 or high < 0))})
        return pd.DataFrame(rows)

    # --- plots ---------------------------------------------------------------------------------
    def plot_all(self, folder):
        from .plots import _figure
        folder.mkdir(parents=True, exist_ok=True)
        colours = {c: f"C{i % 10}" for i, c in enumerate(self.conditions)}

        fig = _figure(11, 4, left=0.07, right=0.98, bottom=0.13, top=0.9, wspace=0.25)
        loss_ax, acc_ax = fig.subplots(1, 2)
        for condition in self.conditions:
            ids = self.confirmed(condition)["run_id"].tolist()
            for ax, key in ((loss_ax, "val_cross_entropy"), (acc_ax, "val_accuracy")):
                curves = [self.history(r, key) for r in ids]
                curves = [c for c in curves if c]
                if not curves:
                    continue
                length = min(map(len, curves))
                stack = np.array([c[:length] for c in curves])
                epochs = np.arange(1, length + 1)
                ax.plot(epochs, stack.mean(0), color=colours[condition], label=condition)
                ax.fill_between(epochs, stack.min(0), stack.max(0), color=colours[condition], alpha=0.2)
        loss_ax.set(xlabel="epoch", ylabel="validation cross-entropy", yscale="log",
                    title="confirmed best: mean, band = min..max over seeds")
        acc_ax.set(xlabel="epoch", ylabel="validation accuracy", title="validation accuracy")
        acc_ax.axhline(self.target, color="grey", linestyle=":", linewidth=1)
        for ax in (loss_ax, acc_ax):
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.savefig(folder / PLOTS[0])

        fig = _figure(8, 4.5, left=0.1, right=0.98, bottom=0.12, top=0.9)
        ax = fig.subplots()
        search = self.frame[self.frame["kind"] == "search"]
        column = f"metric.{self.objective}"
        floor = search[column].min() if column in search and search[column].notna().any() else 0.0
        for condition in self.conditions:
            part = search[search["condition"] == condition]
            ok = part[part["state"].isin(["complete", "pruned"])]
            bad = part[part["state"] == "diverged"]
            ax.scatter(ok["param.lr"].astype(float), ok[column].astype(float), color=colours[condition],
                       label=condition, s=18)
            if len(bad):
                ax.scatter(bad["param.lr"].astype(float), [floor] * len(bad), color=colours[condition],
                           marker="x", s=40)
        ax.set(xscale="log", xlabel="learning rate", ylabel=f"{self.objective} (search trials)",
               title="learning-rate sensitivity (x: diverged)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.savefig(folder / PLOTS[1])

        fig = _figure(8, 4, left=0.1, right=0.98, bottom=0.25, top=0.9)
        ax = fig.subplots()
        for i, condition in enumerate(self.conditions):
            reached = [self.epochs_to_target(r) for r in self.confirmed(condition)["run_id"]]
            hit = [e for e in reached if e is not None]
            ax.scatter([i] * len(hit), hit, color=colours[condition])
            if hit:
                ax.hlines(np.median(hit), i - 0.3, i + 0.3, color=colours[condition])
            censored = len(reached) - len(hit)
            if censored:
                ax.annotate(f"{censored} never", (i, 0), ha="center", fontsize=8)
        ax.set_xticks(range(len(self.conditions)), self.conditions, rotation=20, fontsize=8)
        ax.set(ylabel="epochs", title=f"epochs to reach validation accuracy {self.target:g} (line: median)")
        ax.grid(alpha=0.3)
        fig.savefig(folder / PLOTS[2])
        return [folder / p for p in PLOTS] + self.plot_optuna(folder)

    def plot_optuna(self, folder):
        if not self.storage:
            return []
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import optuna
        from optuna.visualization import matplotlib as optuna_plots

        from .search import open_storage
        try:
            storage, _ = open_storage(self.storage, self.study_name)
        except HarnessError:
            return []
        import warnings
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Target and region quantiles")  # few trials: equal shares
        optuna.logging.set_verbosity(optuna.logging.ERROR)  # "trial omitted: value is inf" for diverged ones
        made = []
        for condition in self.conditions:
            try:
                study = optuna.load_study(study_name=f"{self.study_name}/{condition}", storage=storage)
            except KeyError:
                continue
            safe = condition.replace("/", "_")
            for name, plot in (("history", optuna_plots.plot_optimization_history),
                               ("importances", optuna_plots.plot_param_importances)):
                try:
                    ax = plot(study)
                except (ValueError, RuntimeError):
                    continue  # too few finished trials for this plot
                ax.set_title(f"{condition}: {ax.get_title()}")
                path = folder / f"optuna_{name}_{safe}.png"
                ax.figure.savefig(path, bbox_inches="tight")
                plt.close(ax.figure)
                made.append(path)
        return made


def format_table(table, fmt):
    if fmt == "csv":
        return table.to_csv(index=False)
    if fmt == "json":
        return json.dumps(table.to_dict(orient="records"), default=str)
    if fmt == "markdown":
        columns = list(table.columns)
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        for row in table.itertuples(index=False):
            lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
        return "\n".join(lines)
    return table.to_string(index=False, float_format=lambda v: f"{v:.4g}")


def _cell(value):
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def html_report(study_name, table, pairs, images):
    parts = [f"<html><head><meta charset='utf-8'><title>{html.escape(study_name)}</title>",
             "<style>body{font-family:sans-serif;margin:2em} table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px} img{max-width:100%}</style>",
             f"</head><body><h1>Study {html.escape(study_name)}</h1>",
             "<h2>Conditions</h2>", table.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep=""),
             "<p>test accuracy: mean and 95% Student t interval over the confirmation seeds.</p>",
             "<h2>Paired differences of test accuracy (a - b, same seeds)</h2>",
             pairs.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="")]
    for image in images:
        encoded = base64.b64encode(Path(image).read_bytes()).decode()
        parts.append(f"<h3>{html.escape(Path(image).stem)}</h3><img src='data:image/png;base64,{encoded}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def run_compare(study_name, uri, fmt, out_dir):
    comparison = Comparison(study_name, uri)
    table, pairs = comparison.table(), comparison.paired_differences()
    folder = Path(out_dir or Path("reports") / study_name)
    images = comparison.plot_all(folder)
    report = html_report(study_name, table, pairs, images)
    (folder / "report.html").write_text(report)
    table.to_csv(folder / "summary.csv", index=False)
    pairs.to_csv(folder / "paired_differences.csv", index=False)
    artifacts = {p.name: p.read_bytes() for p in images}
    artifacts["report.html"] = report.encode()
    for run_id in comparison.parents.values():
        write_artifacts(comparison.client, run_id, artifacts)
    return table, pairs, folder
