"""Evaluation metrics of SparseDrive (docs/model-notes.md#evaluation), numpy only."""
