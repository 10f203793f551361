"""The Spark engine (``offline: {type: spark}``), its dialect rules and point-in-time strategy.
Needs the ``spark`` extra (pyspark) and Java 17+."""
