"""Rollout recording: rosbag2 (MCAP) bags written in-process, and their conversion to NumPy arrays.

``RolloutRecorder`` writes the bag (``recording.bag``); ``bag_to_arrays`` in
``recording.convert`` (also ``python -m sim_bridge_core.recording.convert BAG OUT.npz``) reads one
back into per-world arrays. See docs/recording.md.
"""

from sim_bridge_core.recording.bag import RecordingError, RolloutRecorder

__all__ = ["RecordingError", "RolloutRecorder"]
