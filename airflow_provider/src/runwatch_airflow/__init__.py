"""Apache Airflow provider for runwatch: wait for remote runs without holding a worker slot."""

from __future__ import annotations

__version__ = "0.1.0"
