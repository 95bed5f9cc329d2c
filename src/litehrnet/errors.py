"""The project's error types: each is a ValueError whose one-line message names the file and the problem.

The command lines turn every ValueError into that line on stderr and exit code 2.
"""


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the network (the message names the file)."""


class AnnotationError(ValueError):
    """An annotation file that cannot be used; the one-line message names the file, the record and why."""
