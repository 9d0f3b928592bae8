"""Round trips: prompt -> image -> caption, and image -> caption -> image, on the public APIs of captioning,
t2i and metrics (`vlgen roundtrip prompts|images`).

    from vlgen.roundtrip import RoundtripConfig, roundtrip_prompts
    cfg = RoundtripConfig(captioners=["blip", "runs/cnn/best"])
    cfg.generation.base, cfg.generation.num_inference_steps = "runs/base", 20
    res = roundtrip_prompts(["a red circle above a blue square"], "rt/", cfg)
    res.metrics["captioners"]["blip"]["BLEU-4"], res.rows[0]["captions"]["runs/cnn/best"]

Outputs in OUT: the generated images, `metadata.jsonl` (one row per generated image, an imagefolder),
`metrics.json` (`{"direction", "n", "captioners": {NAME: {METRIC: value}}, "settings"}`), `report.html`,
`config.yaml` (the resolved config) and `journal/` (what lets a killed run resume; see `run`).
"""

from vlgen.roundtrip.config import CAPTION_METRIC_KEYS, PAIRED_IMAGE_KEYS, PROMPT_IMAGE_KEYS, RoundtripConfig
from vlgen.roundtrip.inputs import read_prompts_file
from vlgen.roundtrip.run import RoundtripResult, roundtrip_images, roundtrip_prompts

__all__ = [
    "CAPTION_METRIC_KEYS",
    "PAIRED_IMAGE_KEYS",
    "PROMPT_IMAGE_KEYS",
    "RoundtripConfig",
    "RoundtripResult",
    "read_prompts_file",
    "roundtrip_images",
    "roundtrip_prompts",
]
