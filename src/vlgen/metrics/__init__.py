"""Pure metrics: lists of strings (or tensors) in, numbers out - never paths or argv.

Text metrics live in `vlgen.metrics.text` (orchestration), `coco` (pycocoevalcap), `bertscore`, `similarity`,
`clipscore` (CLIPScore/RefCLIPScore of captions against their images, Hessel et al. 2021);
`compare` puts two score sets side by side. Heavy libraries are imported when a metric is computed.
"""

from vlgen.metrics.compare import compare_scores
from vlgen.metrics.text import (
    DEFAULT_COMBINED_WEIGHTS,
    METRIC_GROUPS,
    METRIC_KEYS,
    CaptionScores,
    check_caption_inputs,
    compute_caption_metrics,
    parse_metrics,
)

__all__ = [
    "DEFAULT_COMBINED_WEIGHTS",
    "METRIC_GROUPS",
    "METRIC_KEYS",
    "CaptionScores",
    "check_caption_inputs",
    "compare_scores",
    "compute_caption_metrics",
    "parse_metrics",
]
