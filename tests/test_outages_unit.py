"""Bounded patience with a shared service, on a fake clock (the real outages: test_outages.py)."""

import pytest

from harness.common.outages import OutageError, Patience, http_retries, is_database_outage


class Clock:
    def __init__(self):
        self.now = 0.0

    def sleep(self, seconds):
        self.now += seconds

    def __call__(self):
        return self.now


class Away(Exception):
    pass


def _flaky(failures):
    calls = []

    def call():
        calls.append(1)
        if len(calls) <= failures:
            raise Away("connection refused")
        return "answer"

    return call, calls


def test_an_outage_is_waited_out_and_said_once(capsys):
    clock = Clock()
    patience = Patience("the database", lambda e: isinstance(e, Away), 60, clock.sleep, clock)
    call, calls = _flaky(5)
    assert patience.call(call) == "answer" and len(calls) == 6
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2
    assert err[0] == "harness: the database does not answer (Away: connection refused); waiting up to 60 s"
    assert err[1].startswith("harness: the database answers again after")
    assert 0 < clock.now < 60


def test_past_the_bound_one_error_and_later_calls_fail_at_once():
    clock = Clock()
    patience = Patience("the database", lambda e: isinstance(e, Away), 10, clock.sleep, clock)
    call, calls = _flaky(10**6)
    with pytest.raises(OutageError, match=r"the database did not answer for 10 s \(Away: connection refused\)"):
        patience.call(call)
    assert 10 <= clock.now < 16
    before = len(calls)
    with pytest.raises(OutageError):
        patience.call(call)
    assert len(calls) == before + 1  # no second wait


def test_other_errors_are_not_outages():
    patience = Patience("the database", lambda e: isinstance(e, Away), 10, lambda s: None, lambda: 0.0)
    with pytest.raises(ValueError):
        patience.call(lambda: int("x"))


def test_database_outages_are_found_behind_optunas_wrapper():
    import sqlalchemy.exc as sa
    from optuna.exceptions import StorageInternalError

    try:
        try:
            raise sa.OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))
        except sa.OperationalError as exc:
            raise StorageInternalError("invalid data in the commit") from exc
    except StorageInternalError as wrapped:
        assert is_database_outage(wrapped)
    assert not is_database_outage(StorageInternalError("invalid data in the commit"))
    assert not is_database_outage(sa.IntegrityError("INSERT", {}, Exception("duplicate key")))


def test_mlflows_http_retries_end_within_the_bound():
    assert [http_retries(s) for s in (0, 4, 10, 60, 300, 1000)] == [1, 1, 2, 4, 7, 7]


def test_patience_lasts_as_long_as_the_sweep(monkeypatch):
    import os

    from harness.common.outages import current_patience, patient

    monkeypatch.delenv("HARNESS_OUTAGE_SECONDS", raising=False)
    with patient(7):
        assert os.environ["HARNESS_OUTAGE_SECONDS"] == "7" and current_patience() == 7.0
    assert "HARNESS_OUTAGE_SECONDS" not in os.environ and current_patience() == 0.0  # later commands fail at once
    with patient():
        assert current_patience() == 300.0
