"""The evidence benchmark behind ``motion-relevance evaluate``: does each motion number measure
how much a model relies on motion? ``benchmark`` runs the graded synthetic family and real
clips (a sink of the same ``runs`` layer as the report and the batch store); ``files`` writes its
CSV tables and plots. ``docs/evidence.md`` has the protocol and the results.
"""

from __future__ import annotations

from motion_relevance.evidence.benchmark import (
    COLUMNS,
    SCORES,
    Evaluation,
    EvaluationConfig,
    example_videos,
    run_evaluation,
)
from motion_relevance.evidence.files import write_evaluation

__all__ = ["COLUMNS", "SCORES", "Evaluation", "EvaluationConfig", "example_videos", "run_evaluation", "write_evaluation"]
