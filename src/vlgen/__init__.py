"""vlgen: vision-language generation in both directions.

Image -> text (CNN-LSTM, BLIP, ViT-GPT2 captioners, prompt inversion), text -> image (SDXL DreamBooth-LoRA),
and the metrics for both. Importing this package does no work and imports no heavy library.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
