"""The records of a scale test: a configuration (executors x cores per executor) and one
measured run of it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional


@dataclass(frozen=True)
class Config:
    executors: int
    cores: int  # per executor

    @property
    def total_cores(self) -> int:
        return self.executors * self.cores

    @property
    def label(self) -> str:
        return f"{self.executors}x{self.cores}"


@dataclass
class Measurement:
    config: str
    executors: int
    cores_per_executor: int
    total_cores: int
    input: str
    repetition: int
    warmup: bool
    wall_s: float
    ok: bool
    images: Optional[int] = None
    images_per_s: Optional[float] = None
    partitions: Optional[int] = None
    executors_used: Optional[int] = None
    app_id: Optional[str] = None
    event_log: Optional[str] = None
    stage_s: Dict[str, float] = field(default_factory=dict)
    skew: Optional[float] = None
    tail_idle_core_s: Optional[float] = None
    utilisation: Optional[float] = None
    busy_core_s: Optional[float] = None  # task time of the whole run (event log), core-seconds
    featurize_jobs_s: Optional[float] = None  # the featurize jobs' span in the event log (EventLog.jobs_span_s), s
    load_before: Optional[float] = None
    load_after: Optional[float] = None
    error: Optional[str] = None

