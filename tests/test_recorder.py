"""Who runs the MLflow operations: how their errors come back."""

from harness.records.recorder import _error_payload


def test_a_full_disk_wrapped_in_another_error_is_still_said_as_a_full_disk():
    """SQLAlchemy raised 'Query-invoked autoflush' from sqlite's 'database or disk is full': exit 2 and
    the disk unnamed."""
    try:
        try:
            raise OSError("database or disk is full")
        except OSError as cause:
            raise RuntimeError("(raised as a result of Query-invoked autoflush; consider ...)") from cause
    except RuntimeError as exc:
        kind, message = _error_payload(exc, "sqlite:////data/project/mlruns/mlflow.db")
    assert kind == "disk" and "the disk holding /data/project/mlruns is full (database or disk is full)" in message
