"""The one resumable training loop `vlgen train caption` and `vlgen train lora` share (vlgen.training.loop).

The trainers keep what differs (the model, its loss, validation, outputs); this package owns the rest: the
accelerate-prepared DataLoader, gradient accumulation, checkpoint/resume with a keep-limit, the history,
early stopping agreed by all processes, and one meaning per learning-rate schedule name (schedules.py).
"""
