"""Evaluation metrics of SparseDrive (spec §8), numpy only."""
