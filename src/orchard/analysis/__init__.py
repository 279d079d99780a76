"""Analysis of orchard runs from Spark event logs: parsing (eventlog), metrics and verdict
(metrics), figures and the report (report).

Kept light on import: `orchard.pipeline.run` imports `orchard.analysis.eventlog` while a run starts.
"""
