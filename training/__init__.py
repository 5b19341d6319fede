"""Training: ground truth from geometry, knowledge distillation, evaluation (needs the `train` extra)."""
