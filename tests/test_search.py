"""The Optuna adapter: stack pruning decides as Optuna does, retries, heartbeats, URL redaction."""

import optuna
import pytest
from optuna.trial import TrialState

from harness.common.urls import redact
from harness.sweep.conditions import retried_from, trial_state
from harness.sweep.liveness import Heartbeat
from harness.sweep.pruning import StackPruning
from tests.helpers import wait_until


def _study_with_history(pruner, storage=None):
    study = optuna.create_study(direction="maximize", pruner=pruner, storage=storage)
    for finished in range(6):
        trial = study.ask()
        for epoch in range(1, 9):
            trial.report(0.1 * finished + 0.01 * epoch, epoch)
        study.tell(trial, 0.1 * finished + 0.08)
    return study


@pytest.mark.parametrize(
    "pruner",
    [
        optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2),
        optuna.pruners.PercentilePruner(25.0, n_startup_trials=2),
        optuna.pruners.HyperbandPruner(min_resource=1, max_resource=8),
    ],
    ids=["median", "percentile", "hyperband"],
)
def test_stack_pruning_decides_exactly_as_should_prune(pruner):
    """Against finished trials alone (no values of the stack's epoch given), Optuna's own decisions."""
    study = _study_with_history(pruner)
    stack = [study.ask() for _ in range(4)]
    pruning = StackPruning(study)
    decisions = []
    for epoch in range(1, 9):
        for i, trial in enumerate(stack):  # members report in turn, as the training loop calls them
            value = [0.05, 0.3, 0.55, 0.9][i] + 0.01 * epoch
            trial.report(value, epoch)
            ours = pruning.should_prune(trial, epoch, value)
            assert ours == trial.should_prune(), (epoch, i)
            decisions.append(ours)
    if not isinstance(pruner, optuna.pruners.HyperbandPruner):
        assert True in decisions and False in decisions  # the comparison was not vacuous


def _train_fake_stack(direction, curves, order=None):
    """A stack with no finished trial, its members reporting ``curves[i][epoch - 1]`` as the worker does:
    the epoch's values first, then each live member reports and decides. {member: epoch it was pruned}."""
    study = optuna.create_study(
        direction=direction, pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)
    )
    stack = [study.ask() for _ in curves]
    pruning, pruned = StackPruning(study, among_stack=True), {}
    for epoch in range(1, len(curves[0]) + 1):
        live = [i for i in (order or range(len(stack))) if i not in pruned]
        pruning.epoch_values(epoch, {stack[i].number: curves[i][epoch - 1] for i in live})
        for i in live:
            if pruning.report(stack[i], epoch, curves[i][epoch - 1]):
                assert not stack[i].should_prune()  # Optuna's own rule: nothing finished, nothing pruned
                pruned[i] = epoch
    return pruned


# five members, each curve rising by 0.01 per epoch; members 0 and 1 lie below the others' median
RISING = [[base + 0.01 * epoch for epoch in range(1, 7)] for base in (0.1, 0.2, 0.35, 0.4, 0.5)]


def test_a_stacks_members_prune_each_other_below_their_median_after_the_warmup():
    """Epoch 1 is inside the warm-up (2 steps): nobody is pruned. At epoch 2 each member has 4 references
    (>= 3 startup trials): the two below the others' median are pruned, whatever order they report in.
    Then 3 are left, with 2 references each: too few, so they train to the end."""
    assert _train_fake_stack("maximize", RISING) == {0: 2, 1: 2}
    assert _train_fake_stack("maximize", RISING, order=[4, 3, 2, 1, 0]) == {0: 2, 1: 2}


def test_a_stack_minimizing_a_loss_prunes_its_highest_losses():
    losses = [[1 - v for v in curve] for curve in RISING]  # the same members, as a falling loss
    assert _train_fake_stack("minimize", losses) == {0: 2, 1: 2}


def test_a_member_that_trained_to_the_end_is_a_finished_trial_for_the_rest_of_its_stack():
    """A (2 epochs) finished at epoch 2, before Optuna is told: from epoch 3 it counts among the references
    as a finished trial does (3 with C and D, the startup count), so B, far below C and D, is pruned."""
    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=3)
    )
    a, b, c, d = (study.ask() for _ in range(4))
    pruning = StackPruning(study, among_stack=True)
    for epoch in (1, 2):
        pruning.epoch_values(epoch, {a.number: 0.9, b.number: 0.1, c.number: 0.5, d.number: 0.6})
        assert not pruning.report(a, epoch, 0.9, last=epoch == 2)
        assert not any(pruning.report(t, epoch, v) for t, v in ((b, 0.1), (c, 0.5), (d, 0.6)))  # warm-up
    pruning.epoch_values(3, {b.number: 0.1, c.number: 0.5, d.number: 0.6})
    assert pruning.report(b, 3, 0.1) and not pruning.report(c, 3, 0.5)


def test_a_member_is_never_its_own_reference():
    """Two members, 2 startup trials: each has one reference, the other; too few, so neither is pruned
    (counted among its own references, the lower one would be: below the median of 0.9 and 0.2)."""
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=2))
    high, low = study.ask(), study.ask()
    pruning = StackPruning(study, among_stack=True)
    pruning.epoch_values(1, {high.number: 0.9, low.number: 0.2})
    assert not pruning.report(high, 1, 0.9) and not pruning.report(low, 1, 0.2)
    finished = study.ask()  # a finished trial makes the second reference
    finished.report(0.8, 2)
    study.tell(finished, 0.8)
    pruning.epoch_values(2, {high.number: 0.9, low.number: 0.2})
    assert not pruning.report(high, 2, 0.9) and pruning.report(low, 2, 0.2)


@pytest.mark.parametrize(
    "pruner",
    [optuna.pruners.MedianPruner(n_startup_trials=1), optuna.pruners.PercentilePruner(25.0, n_startup_trials=1)],
    ids=["median", "percentile"],
)
def test_a_diverged_trial_is_no_pruning_reference(pruner):
    """A run that exploded in epoch 5 had 0.967 at epoch 2: with it as the median, every later trial of
    its condition was pruned at epoch 2 and the condition ended with no result (the full-disk test's
    audit caught it, 1 run in 35). It is told to Optuna as -inf; as a trial Optuna fails for NaN, it is
    left out of the references; a finite trial then decides as Optuna does."""
    study = optuna.create_study(direction="maximize", pruner=pruner)
    exploded = study.ask()
    for epoch, value in enumerate([0.733, 0.967, 0.9, 0.667, 0.667], start=1):
        exploded.report(value, epoch)
    study.tell(exploded, float("-inf"))
    trial = study.ask()
    trial.report(0.867, 2)
    assert trial.should_prune()  # Optuna's own rule, against the exploded run's epoch 2
    assert not StackPruning(study).should_prune(trial, 2, 0.867)
    finite = study.ask()
    finite.report(0.9, 2)
    study.tell(finite, 0.95)
    later = study.ask()
    later.report(0.867, 2)
    assert StackPruning(study).should_prune(later, 2, 0.867)  # below the finite trial's 0.9


def test_trial_state_and_retry_origin():
    study = optuna.create_study()
    dead = study.ask()
    dead.suggest_float("lr", 0.1, 1.0)
    study.tell(dead, state=TrialState.FAIL)  # failed without a word from its worker, as a reaper does
    optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)(study, study.trials[0])
    again = study.ask()
    assert again.params == study.trials[0].params
    study.tell(again, 1.0)
    frozen = study.trials
    assert trial_state(frozen[0]) == "killed" and retried_from(frozen[0]) is None
    assert trial_state(frozen[1]) == "complete" and retried_from(frozen[1]) == 0


def test_heartbeat_keeps_held_trials_alive_and_lets_released_ones_go(tmp_path):
    """Stale trials are failed until the released one is (its last beat older than the 2 s grace period),
    not once after a sleep: the held one, first beaten before it, would be as stale by then had its
    heartbeat not gone on."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'o.db'}", heartbeat_interval=1, grace_period=2)
    study = optuna.create_study(storage=storage)
    held, released = study.ask(), study.ask()
    beat = Heartbeat(storage)
    beat.hold(held)
    beat.hold(released)
    beat.release(released)

    def released_failed():
        optuna.storages.fail_stale_trials(study)
        return study.trials[released.number].state == TrialState.FAIL

    try:
        wait_until(released_failed, "the released trial was failed as stale", timeout=120, every=0.2)
        states = {t.number: t.state for t in study.get_trials()}
    finally:
        beat.close()
    assert states == {held.number: TrialState.RUNNING, released.number: TrialState.FAIL}


def test_urls_never_show_passwords():
    assert redact("postgresql+psycopg://bob:s3cr@t@db:5432/x") == "postgresql+psycopg://bob:***@db:5432/x"
    assert redact("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert redact("postgresql://bob@db/x") == "postgresql://bob@db/x"


def _condition_studies(tmp_path):
    from harness.studies.parse import read_study
    from harness.sweep.conditions import ConditionStudies
    from harness.sweep.storages import open_storage
    from harness.sweep.studies import prepare_studies
    from tests.conftest import TINY_STUDY

    path = tmp_path / "tiny.toml"
    path.write_text(TINY_STUDY)
    study = read_study(str(path))
    storage, _ = open_storage(f"journal:{tmp_path / 'o.journal'}", study.name)
    prepare_studies(study, storage)
    return ConditionStudies(study, study.conditions[0], storage)


def test_a_retry_copy_does_not_wear_its_originals_outcome(tmp_path):
    studies = _condition_studies(tmp_path)
    original, params = studies.ask_search()
    studies.finish("search", original, "interrupted", attrs={"mlflow_run_id": "run-of-the-original"})
    copy, same = studies.ask_search()
    assert same == params and copy.user_attrs["state"] == "running" and copy.user_attrs["mlflow_run_id"] is None
    studies.search.tell(copy.number, state=TrialState.FAIL)  # then its worker dies too
    frozen = {t.number: t for t in studies.search.get_trials(deepcopy=False)}
    assert trial_state(frozen[original.number]) == "interrupted" and trial_state(frozen[copy.number]) == "killed"
    assert retried_from(frozen[copy.number]) == original.number


def test_a_trial_failed_as_dead_elsewhere_is_let_go(tmp_path):
    """Late heartbeats: another worker failed our trial; reporting stops it, finishing says so."""
    studies = _condition_studies(tmp_path)
    kept, lost = studies.ask_search()[0], studies.ask_search()[0]
    studies.search.tell(lost.number, state=TrialState.FAIL)  # what a heartbeat check elsewhere does
    pruning = StackPruning(studies.search)
    assert pruning.report(kept, 1, 0.5) is False and pruning.report(lost, 1, 0.5) is True
    assert pruning.taken_away == {lost.number}
    assert studies.finish("search", lost, "complete", 0.5) is False
    assert studies.finish("search", kept, "complete", 0.5) is True
    states = {t.number: t.state for t in studies.search.get_trials(deepcopy=False)}
    assert states == {kept.number: TrialState.COMPLETE, lost.number: TrialState.FAIL}


def test_optuna_plot_titles_are_replaced_not_printed_over():
    from matplotlib.figure import Figure

    from harness.sweep.optuna_plots import retitle

    ax = Figure().subplots()
    ax.set_title("Hyperparameter Importances", loc="left")  # where Optuna's importance plot puts it
    retitle(ax, "mse-sgd")
    assert ax.get_title(loc="left") == "mse-sgd: Hyperparameter Importances"
    assert ax.get_title() == "" and ax.get_title(loc="right") == ""


def test_every_database_call_optunas_cache_makes_waits_out_an_outage():
    import re

    import optuna

    from harness.sweep.storages import PatientRDBStorage

    source = open(optuna.storages._cached_storage.__file__).read()
    called = set(re.findall(r"self\._backend\.([a-z_]+)", source))
    not_database = {"get_heartbeat_interval", "get_heartbeat_stale_trial_callback"}
    assert called - not_database and all(name in vars(PatientRDBStorage) for name in called - not_database)


def _searched(storage, study, condition, trials):
    from optuna.distributions import FloatDistribution, IntDistribution

    found = optuna.create_study(study_name=study.optuna_name(condition), storage=storage, load_if_exists=True)
    distributions = {"lr": FloatDistribution(0.01, 2.0, log=True), "epochs": IntDistribution(3, 8)}
    for lr, epochs, value in trials:
        found.add_trial(
            optuna.trial.create_trial(params={"lr": lr, "epochs": epochs}, distributions=distributions, value=value)
        )


def test_optuna_plots_of_trials_drawn_before_are_copied_and_a_new_trial_draws_its_condition_again(
    tmp_path, monkeypatch
):
    """``compare`` spent half its time on the benchmark drawing Optuna's plots again for the same trials."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from optuna.visualization import matplotlib as plots

    from harness.studies.parse import read_study
    from harness.sweep.optuna_plots import optuna_plots
    from tests.helpers import write_study

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    study = read_study(write_study(tmp_path))
    journal = tmp_path / "search.journal"
    storage = JournalStorage(JournalFileBackend(str(journal)))
    for condition in study.conditions:
        _searched(storage, study, condition, [(0.05, 3, 0.5), (0.5, 5, 0.8), (1.5, 8, 0.6), (0.1, 4, 0.7)])
    drawn = []

    def counted(draw):
        return lambda searched: drawn.append(searched.study_name) or draw(searched)

    for name in ("plot_optimization_history", "plot_param_importances"):
        monkeypatch.setattr(plots, name, counted(getattr(plots, name)))

    def report(folder):
        folder.mkdir()
        return {p.name: p.read_bytes() for p in optuna_plots(study, str(journal), folder)}

    first = report(tmp_path / "first")
    assert len(first) == 4 and len(drawn) == 4  # history and importances of two conditions
    assert report(tmp_path / "second") == first and len(drawn) == 4  # the same trials: copied, none drawn
    changed = study.conditions[0]
    _searched(storage, study, changed, [(0.02, 6, 0.9)])
    third = report(tmp_path / "third")
    assert drawn[4:] == [study.optuna_name(changed)] * 2  # that condition's two plots, drawn again
    history = f"optuna_history_{changed.name}.png"
    assert third.keys() == first.keys() and third[history] != first[history]
    assert [p for p in third if third[p] != first[p] and changed.name not in p] == []


def test_a_fifo_or_a_directory_where_a_kept_optuna_plot_would_be_is_drawn_over_not_waited_on(tmp_path, monkeypatch):
    """The cache folder is read, not trusted: a FIFO there would make ``read_bytes`` wait for ever."""
    import os
    import signal

    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from harness.studies.parse import read_study
    from harness.sweep.optuna_plots import DrawnPlots, _named, optuna_plots, trials_digest
    from tests.helpers import write_study

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    study = read_study(write_study(tmp_path))
    journal = tmp_path / "search.journal"
    storage = JournalStorage(JournalFileBackend(str(journal)))
    condition = study.conditions[0]
    _searched(storage, study, condition, [(0.05, 3, 0.5), (0.5, 5, 0.8), (1.5, 8, 0.6), (0.1, 4, 0.7)])
    searched = optuna.load_study(study_name=study.optuna_name(condition), storage=storage)
    kept = DrawnPlots(study.name).folder
    kept.mkdir(parents=True)
    digest = trials_digest(searched, condition.name)
    os.mkfifo(kept / f"{_named(f'history_{condition.name}')}.{digest}.png")
    (kept / f"{_named(f'importances_{condition.name}')}.{digest}.png").mkdir()
    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("waited on the FIFO"))
    signal.alarm(30)
    try:
        (tmp_path / "report").mkdir()
        made = optuna_plots(study, str(journal), tmp_path / "report")
    finally:
        signal.alarm(0)
    assert sorted(p.name for p in made) == [f"optuna_{n}_{condition.name}.png" for n in ("history", "importances")]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in made)
