"""Checkpoint reading (every supported format, strictly), writing (atomically) and downloading."""
