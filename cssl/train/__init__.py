"""Pieces shared by the training stages: checkpoints, schedules, progress, health checks."""
