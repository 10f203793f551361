"""fsql: declare a feature once in SQL; train on point-in-time-correct tables and serve it online.

Public API::

    import fsql
    project = fsql.Project(".", target="dev")
    project.build()                                   # like `fsql build`
    df = project.training_set("churn_training")       # as `fsql build` published it
    df = project.historical_features(spine_df, ["customer_orders.orders_30d"], timestamp="ts")
"""

from __future__ import annotations

__version__ = "0.1.0"

from fsql.errors import (  # noqa: E402
    CheckFailed,
    ConfigError,
    DefinitionError,
    EngineError,
    FsqlError,
    LockHeldError,
    OnlineStoreError,
    ProjectErrors,
    RequestError,
    StaleDefinitionError,
)
from fsql.project import Project  # noqa: E402

__all__ = [
    "CheckFailed",
    "ConfigError",
    "DefinitionError",
    "EngineError",
    "FsqlError",
    "LockHeldError",
    "OnlineStoreError",
    "Project",
    "ProjectErrors",
    "RequestError",
    "StaleDefinitionError",
    "__version__",
]
