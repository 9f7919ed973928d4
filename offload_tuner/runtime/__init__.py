"""The production path (private): registry, decisions, executors, profiles, statistics. Stdlib only.

Imports nothing from :mod:`offload_tuner.calibration` or :mod:`offload_tuner.inspection`; ``offload_tuner``
itself is the public face.
"""
