"""orchard: fruit photos to compact, reusable features on Apache Spark."""

__version__ = "0.1.0"
