"""Analysis of orchard runs: event-log parsing (eventlog), metrics and verdict (metrics), figures
and the report (figures, report), the scale test (scaling/: records, runner, fit, render) and a
classifier on the features (classifier).
"""
