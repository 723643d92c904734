"""Thin command-line entry points: `python -m sparsedrive_ros.tools.<name>`."""
