"""A fresh study's first stack, trained while the tracking store opens.

Before anything trains, a sweep asks MLflow for its experiment, parent runs and repairs, and whether the
study's trials are already there (a lost journal); MLflow's imports and store take the first 1-2 s of a
sweep. A fresh study's first trials are known before any store answers: a seeded sampler asked for them
on an empty study draws the same settings wherever that study is kept. So worker 0 trains its first stack
on a thread beside the preparation, and the stack is kept only when the trials the storage then gives have
exactly those settings (anything else: it is dropped and the stack trained as always).

Nothing of it is written until the real trials are asked, so a kill or an error in the preparation leaves
what it leaves without it. The real trials' pruning decisions are then replayed from the curves
(``replay``), in the order training would have asked them; the first that stops a member ends the replay,
and the stack is trained again from its first epoch, the decisions already told given again without
asking (``resumed``): the records are those of a stack trained after the preparation, bit for bit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..common import faults
from ..engine.data import data_key
from ..engine.training import max_stack, stack_key, train_stack
from ..records.runs import lean_curves
from .conditions import make_sampler, suggest

if TYPE_CHECKING:
    from ..engine.config import TrainConfig
    from ..engine.data import Split
    from ..engine.training import TrainResult
    from ..studies.study import Study

Callback = Callable[[int, int, dict[str, float]], Any]


class FirstStack:
    """Worker 0's first search stack, training on a thread; ``take`` it when the real trials are asked."""

    def __init__(self, configs: list[TrainConfig], split: Split, curves: frozenset[str] | None) -> None:
        self.configs, self.split, self.curves = configs, split, curves
        self.results: list[TrainResult] | None = None
        self.seconds = 0.0
        self.started_ms = int(time.time() * 1000)  # the start of its runs, should they be the ones asked
        self._cancelled = threading.Event()
        self._thread = threading.Thread(target=self._train, name="first-stack", daemon=True)
        self._thread.start()

    @classmethod
    def start(cls, study: Study, storage_url: str, splits: dict[Any, Split]) -> FirstStack | None:
        """The first stack, started, when it can be known now: a study Optuna has never seen (its own
        journal file does not exist yet), no injected faults, and a pruner that cannot stop a member of a
        first stack on its own members' values (median or none: ``among_stack`` decides inside the stack)."""
        fresh = storage_url.startswith("journal:") and not Path(storage_url[len("journal:") :]).exists()
        pruner_outside = study.pruner == "none" or (study.pruner == "median" and not study.pruner_among_stack)
        if not (fresh and pruner_outside and study.search and study.conditions) or faults.active():
            return None
        import optuna

        from .storages import quiet_optuna

        quiet_optuna()  # no line for the study in memory
        condition = study.conditions[0]  # worker 0 starts with its first condition (``SweepWorker.next_task``)
        largest = study.largest_config(condition)
        split = splits[data_key(largest)]
        size = max(1, min(study.stack, max_stack(largest, split), study.trials))
        # direction: "maximize" or "minimize", checked when the study was parsed
        search = optuna.create_study(direction=study.direction, sampler=make_sampler(study, 0))  # type: ignore[arg-type]
        configs = []
        for _ in range(size):
            params = {p.name: suggest(search.ask(), p) for p in study.search}
            configs.append(study.config_for(condition, params, study.search_seed))
        first = [c for c in configs if repr(stack_key(c)) == repr(stack_key(configs[0]))]  # ``stackable``'s first
        lean = study.search_curves == "lean"
        curves = frozenset(lean_curves(first[0], study.objective)) if lean else None
        if any(data_key(c) != data_key(largest) for c in first):  # a searched setting of the data: not known here
            return None
        return cls(first, split, curves)

    def _train(self) -> None:
        start = time.perf_counter()
        try:
            self.results = train_stack(self.configs, self.split, (self._stop,), include_test=False, curves=self.curves)
        except BaseException:  # noqa: BLE001 - the real stack trains and meets it as its own error
            self.results = None
        self.seconds = time.perf_counter() - start

    def _stop(self, t: int, epoch: int, metrics: dict[str, float]) -> bool:
        return self._cancelled.is_set()

    def take(self, configs: Sequence[TrainConfig], curves: Sequence[str] | None) -> list[TrainResult] | None:
        """The trained stack, if it is exactly the stack asked for (waits for it to finish); else None,
        and its training is stopped."""
        wanted = None if curves is None else frozenset(curves)
        if list(configs) != self.configs or wanted != self.curves:
            self.cancel()
            return None
        self._thread.join()
        results, self.results = self.results, None  # handed over: this object keeps no stack alive
        return None if self._cancelled.is_set() else results

    def cancel(self) -> None:
        """Stop training (at the end of the epoch in progress), wait for the thread, keep nothing."""
        self._cancelled.set()
        self._thread.join(timeout=60)
        self.results = None


def replay(results: Sequence[TrainResult], callbacks: Sequence[Callback]) -> tuple[int, int] | None:
    """Call ``callbacks`` with each epoch of the trained ``results`` as ``train_stack`` would have while
    training them: epoch by epoch, the members that trained it in stack order. None when none of them
    stopped a member; else (epoch, member) of the first that did, where the replay ends."""
    lengths = [len(next(iter(r.history.values()), ())) for r in results]
    for epoch in range(1, max(lengths, default=0) + 1):
        for t, result in enumerate(results):
            if lengths[t] >= epoch:
                metrics = {key: values[epoch - 1] for key, values in result.history.items()}
                if any(cb(t, epoch, metrics) for cb in callbacks):
                    return epoch, t
    return None


def resumed(callbacks: Sequence[Callback], stopped: tuple[int, int]) -> Callback:
    """``callbacks`` for training the stack again after ``replay`` stopped at (epoch, member): what was
    replayed is not asked twice, the member it stopped stops there, and from there on they decide."""
    epoch_stopped, member_stopped = stopped

    def callback(t: int, epoch: int, metrics: dict[str, float]) -> bool:
        if (epoch, t) == stopped:
            return True
        if epoch < epoch_stopped or (epoch == epoch_stopped and t < member_stopped):
            return False
        return any(cb(t, epoch, metrics) for cb in callbacks)

    return callback
