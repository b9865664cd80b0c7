"""Schema migrations (Alembic), run at start-up and as the chart's pre-upgrade Job."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

SCRIPTS = Path(__file__).parent / "migrations"


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SCRIPTS))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database to ``revision``; idempotent, safe for concurrent starters on PostgreSQL."""
    config = alembic_config(engine)
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # a migration may rewrite a large table: no per-statement limit; one migrator at a time
            connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(727274)")
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def main() -> None:
    """``python -m atlasloop.tracking.migrate``: upgrade the configured database and exit."""
    from atlasloop.common.database import make_engine
    from atlasloop.tracking.settings import TrackingSettings

    upgrade(make_engine(TrackingSettings().database))


if __name__ == "__main__":
    main()
