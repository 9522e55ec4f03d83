"""Whether a PostgreSQL URL answers, said in one line before anything is created (its driver named
when missing). Both stores use it: Optuna's RDB storage and an MLflow tracking store on PostgreSQL."""


def connect(engine, url):
    from .errors import HarnessError
    from .urls import redact

    try:
        return engine.connect()
    except Exception as exc:  # noqa: BLE001 - an unreachable database is user input, said in one line
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HarnessError(f"{redact(url)}: cannot connect to the database ({redact(reason)[:300]})") from None


def check_reachable(url):
    """A PostgreSQL URL must answer before anything is created elsewhere (one line if it does not)."""
    if not url.startswith("postgresql"):
        return
    engine = engine_for(url)
    try:
        connect(engine, url).close()
    finally:
        engine.dispose()


def engine_for(url):
    import sqlalchemy

    from .errors import HarnessError

    try:
        return sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    except ImportError as exc:
        raise HarnessError(f"PostgreSQL needs its driver ({exc.name}): pip install -e '.[distributed]'") from None
