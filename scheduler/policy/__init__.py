"""The judging policy, without I/O: which commits to compare, what counts as a
regression, when to bisect, when to confirm, when an alert has recovered. The pipeline
(``scheduler.pipeline``) gathers the evidence and applies the decision; nothing here reads
a database, runs a process, asks a clock or calls git (a test enforces the imports)."""

from .decide import (
    Bisect,
    Confirmation,
    Decision,
    Evidence,
    OpenAlert,
    Recovery,
    RunInfo,
    decide,
    names,
)
from .neighbours import Neighbours, neighbours

__all__ = ["Bisect", "Confirmation", "Decision", "Evidence", "Neighbours", "OpenAlert",
           "Recovery", "RunInfo", "decide", "names", "neighbours"]
