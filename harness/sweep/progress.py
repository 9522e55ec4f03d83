"""How far a sweep is, read from its Optuna storage: per condition, search trials done of the budget, the
best value so far, and confirmation seeds done of those asked.

On a terminal, one tqdm bar per condition. In a log or a pipe, whole lines: the first when work begins, one
whenever a condition finishes its search or its confirmation, else at most every ``EVERY`` seconds while
something changes, and a last line after the sweep settled, whose counts are the summary's. Confirmations run
after every search (``SweepWorker.next_task``), so lines printed on a timer alone all fell in the search
and said ``confirmed 0/5``; the last line, the only one to come after the confirmations, was never printed.
"""

from __future__ import annotations

import dataclasses
import sys
import time

from optuna.trial import TrialState

from ..common.output import say
from .conditions import ConditionStudies, seed_of, trial_state
from .storages import open_storage
from .studies import budget_asked_before


@dataclasses.dataclass(frozen=True)
class ConditionState:
    """What one condition's progress says."""

    name: str
    done: int  # search trials finished (complete or pruned), at most the budget
    budget: int
    best: float | None
    confirmed: int  # wanted seeds whose confirmation run finished (complete or diverged)
    failed: int  # wanted seeds whose confirmation failed with a training error
    seeds: int

    def text(self) -> str:
        best = f"best {self.best:.4f}, " if self.best is not None else ""
        failed = f", {self.failed} failed" if self.failed else ""
        return f"{self.name} {self.done}/{self.budget} ({best}confirmed {self.confirmed}/{self.seeds}{failed})"

    def milestones(self) -> tuple[bool, bool]:
        """(search finished, confirmation finished): a line is printed when either becomes true."""
        return self.done >= self.budget, self.confirmed + self.failed >= self.seeds


def condition_state(studies: ConditionStudies, budget: int, seeds: int) -> ConditionState:
    """The condition's counts as they stand in the storage: only the seeds this sweep asks for count."""
    counts = studies.counts()
    best = studies.best_trial()
    confirmed = failed = 0
    for t in studies.confirm.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
        if seed_of(t) not in studies.seeds:
            continue
        if t.state == TrialState.COMPLETE:
            confirmed += 1
        elif trial_state(t) == "failed":
            failed += 1
    done = min(counts["complete"] + counts["pruned"], budget)
    value = best.value if best is not None else None
    return ConditionState(studies.condition.name, done, budget, value, confirmed, failed, seeds)


class SweepProgress:
    """The progress of one sweep (see the module's docstring); ``update`` between stacks, ``close`` at the end."""

    EVERY = 10.0  # seconds between two lines of a log while nothing finishes
    READ_EVERY = (2.0, 0.5)  # seconds between two reads of the storage: in a log, on a terminal

    def __init__(self, study, storage, terminal=False, quiet=False, stream=None):
        self.study, self.storage, self.terminal, self.quiet = study, storage, terminal, quiet
        self.stream = stream or sys.stderr
        self.studies: list[ConditionStudies] | None = None
        self.bars: list | None = None
        self.total, self.read_at, self.said_at, self.said = study.trials, 0.0, 0.0, None
        self.start = time.perf_counter()

    def states(self) -> list[ConditionState]:
        if self.studies is None:
            self._open()
        seeds = self.study.confirm_seeds
        return [condition_state(studies, self.total, seeds) for studies in self.studies or ()]

    def update(self) -> None:
        if self.quiet or time.perf_counter() - self.read_at < self.READ_EVERY[self.terminal]:
            return
        self.read_at = time.perf_counter()
        states = self.states()
        if self.terminal:
            self._draw(states)
        elif self._worth_a_line(states):
            self._line(states)

    def close(self, finished: bool = True) -> None:
        """The last line (``finished``: the sweep settled; its counts are the summary's), bars closed."""
        if self.quiet:
            return
        if finished:
            states = self.states()
            if self.terminal:
                self._draw(states)
            else:
                self._line(states, "done")
        for bar in self.bars or ():
            bar.close()

    def _worth_a_line(self, states: list[ConditionState]) -> bool:
        if self.said is None:
            return True
        if [s.milestones() for s in states] != [s.milestones() for s in self.said]:
            return True
        return states != self.said and time.perf_counter() - self.said_at >= self.EVERY

    def _line(self, states: list[ConditionState], when: str | None = None) -> None:
        self.said, self.said_at = states, time.perf_counter()
        when = when or f"{time.perf_counter() - self.start:.0f} s"
        say(f"harness sweep: {self.study.name}: " + "; ".join(s.text() for s in states) + f" [{when}]", self.stream)

    def _draw(self, states: list[ConditionState]) -> None:
        for bar, state in zip(self.bars or (), states):
            bar.n = state.done
            bar.set_postfix_str(state.text().partition("(")[2].rstrip(")"), refresh=False)
            bar.refresh()

    def _open(self) -> None:
        storage, _ = open_storage(self.storage, self.study.name)
        self.total = max(self.study.trials, budget_asked_before(self.study, storage))  # as the sweep holds it
        study = dataclasses.replace(self.study, trials=self.total)
        self.studies = [ConditionStudies(study, c, storage) for c in study.conditions]
        if not self.terminal:
            return
        from tqdm import tqdm

        width = max(len(c.name) for c in study.conditions)
        self.bars = []
        for i, studies in enumerate(self.studies):
            done = condition_state(studies, self.total, study.confirm_seeds).done  # a resumed bar starts there
            name = studies.condition.name.ljust(width)
            bar = tqdm(total=self.total, initial=done, desc=name, position=i, file=self.stream, unit="trial")
            self.bars.append(bar)
