"""Moved to `litehrnet.keypoints` (foundation layer). Kept only so that branches written against the old
name merge cleanly; import from `litehrnet.keypoints` in new code."""
from ..keypoints import *  # noqa: F401,F403
