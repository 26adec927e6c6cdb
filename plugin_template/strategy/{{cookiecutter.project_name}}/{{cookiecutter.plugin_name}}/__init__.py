"""{{cookiecutter.description}}.

The plugin's hook implementations, and nothing else: tieline finds this module through
the entry point in pyproject.toml (group ``tieline``) and calls the hook below.

* ``tieline_failover_strategies``: the strategy, used by a settings file with
  ``"failover": {"strategy": "{{cookiecutter.strategy_name}}",
  "path": "/run/tieline/studio.lock"}``.
"""

from __future__ import annotations

from tieline import hookimpl

from .strategy import LockStrategy


@hookimpl
def tieline_failover_strategies() -> list[type]:
    return [LockStrategy]
