"""The Spark engine's point-in-time strategy (``pit.UnionWindowJoin``) and its time-window
aggregations (``windows``), generated in the Spark dialect."""
