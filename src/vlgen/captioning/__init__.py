"""Image -> text captioners: CNN-LSTM, BLIP, ViT-GPT2 (one file per family)."""
