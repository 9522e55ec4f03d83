"""docs/probabilities.md's measured table and its ECE sentences, checked against the study it names: the
shipped studies/noisy_labels.toml swept here, each figure recomputed from every confirmation run's saved
probabilities.npz as MLflow holds it (scipy's log-softmax for the NLL, scikit-learn's brier_score_loss, a
plain ECE, scipy's temperature and t-tests), within the rounding the page prints (last digits differ between
BLAS kernels)."""

import itertools
import math
import re
import shutil

import numpy as np
import pytest
from scipy import optimize, special
from scipy import stats as sps
from sklearn.metrics import brier_score_loss

from harness.analysis.stats import holm
from tests.helpers import ROOT, harness, mlflow_runs

pytestmark = pytest.mark.e2e

PAGE = ROOT / "docs" / "probabilities.md"
COLUMNS = ("accuracy", "confidence", "ece", "nll", "brier", "temperature", "ts_ece")


def _ece(p, labels, bins=15):
    order = np.argsort(p.max(axis=1), kind="stable")
    parts = np.array_split(order, bins)
    return sum(len(b) / len(labels) * abs((p[b].argmax(1) == labels[b]).mean() - p[b].max(1).mean()) for b in parts)


def _temperature(logits, labels):
    def nll(log_t):
        return -np.mean(special.log_softmax(logits / math.exp(log_t), axis=1)[np.arange(len(labels)), labels])

    return math.exp(optimize.minimize_scalar(nll, bounds=(math.log(0.01), math.log(100)), method="bounded").x)


def _figures(path):
    with np.load(path, allow_pickle=False) as saved:
        logits, labels = saved["test_logits"], saved["test_labels"]
        t = _temperature(saved["val_logits"], saved["val_labels"])
    p, classes = special.softmax(logits, axis=1), range(logits.shape[1])
    return {
        "accuracy": float(np.mean(p.argmax(1) == labels)),
        "confidence": float(p.max(1).mean()),
        "ece": _ece(p, labels),
        # from the logits: scikit-learn's log_loss clips p at 2.2e-16, so a row wrong by a logit gap of 100 counts 36
        "nll": float(-np.mean(special.log_softmax(logits, axis=1)[np.arange(len(labels)), labels])),
        "brier": brier_score_loss(labels, p, labels=classes, scale_by_half=False),
        "temperature": t,
        "ts_ece": _ece(special.softmax(logits / t, axis=1), labels),
    }


def _page_table():
    rows = {}
    for line in PAGE.read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 8 and re.fullmatch(r"[a-z_]+-0\.[04]", cells[0]):
            rows[cells[0]] = dict(zip(COLUMNS, cells[1:]))
    return rows


def _close(printed, value):
    """``value`` prints as ``printed`` give or take its last digit's rounding (and float noise)."""
    number = float(printed)
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    return abs(value - number) <= 0.5 * 10**-decimals + 1e-9


def test_the_page_s_table_and_ece_sentences_recompute_from_the_study_s_saved_probabilities(tmp_path):
    shutil.copytree(ROOT / "studies", tmp_path / "studies")
    harness("sweep", "studies/noisy_labels.toml", cwd=tmp_path, check=True, timeout=600)
    client, runs = mlflow_runs(tmp_path, "noisy_labels")
    seeds = {}
    for run in runs:
        if run.data.tags.get("harness.kind") == "confirm" and run.data.tags["state"] != "diverged":
            path = client.download_artifacts(run.info.run_id, "probabilities.npz", str(tmp_path / run.info.run_id))
            seeds.setdefault(run.data.tags["condition"], {})[int(run.data.params["seed"])] = _figures(path)
    table = _page_table()
    assert set(table) == set(seeds) and len(table) == 8
    for condition, row in table.items():
        assert len(seeds[condition]) == 5, condition
        for column, printed in row.items():
            values = [f[column] for f in seeds[condition].values()]
            shown = printed.split(" [")
            assert _close(shown[0], np.mean(values)), (condition, column, printed, np.mean(values))
            if len(shown) == 2:  # the 95% t interval, clipped at 0
                low, high = shown[1].rstrip("]").split(", ")
                half = sps.t.ppf(0.975, 4) * np.std(values, ddof=1) / math.sqrt(5)
                assert _close(low, max(np.mean(values) - half, 0.0)), (condition, column, printed)
                assert _close(high, np.mean(values) + half), (condition, column, printed)
    names = list(seeds)
    pairs = list(itertools.combinations(names, 2))
    p_values = [sps.ttest_rel(*[[seeds[c][s]["ece"] for s in sorted(seeds[c])] for c in pair]).pvalue for pair in pairs]
    adjusted = {frozenset(pair): p for pair, p in zip(pairs, holm(p_values))}
    text = " ".join(PAGE.read_text().split())
    for a, b, said in (
        ("cross_entropy-0.4", "gce-0.4", "2.4e-05"),
        ("mse-0.4", "gce-0.4", "6.1e-05"),
        ("cross_entropy-0.4", "mae-0.4", "2.8e-04"),
        ("mae-0.4", "gce-0.4", "0.92"),
    ):
        assert f"p Holm {said}" in text
        found = adjusted[frozenset((a, b))]
        assert float(f"{found:.2g}") == pytest.approx(float(said), rel=0.05), (a, b, found)
    clean = [pair for pair in pairs if all(c.endswith("-0.0") for c in pair)]
    assert len(clean) == 6 and all(
        adjusted[frozenset(pair)] == pytest.approx(1.0) for pair in clean
    )  # "every p Holm = 1"
