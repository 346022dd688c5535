"""Training: the recipe chosen by cross-validation, fine-tuning and the head."""
