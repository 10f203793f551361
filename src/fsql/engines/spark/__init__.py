"""The Spark engine (``offline: {type: spark}``): its dialect rules (``dialect``), its
point-in-time strategy (``pit.UnionWindowJoin``) and time-window aggregations (``windows``),
generated in the Spark dialect. Needs the ``spark`` extra (pyspark) and Java 17+."""
