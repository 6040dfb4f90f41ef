"""Optimizers and learning-rate schedules (all torch.optim)."""
