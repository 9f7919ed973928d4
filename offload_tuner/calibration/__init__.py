"""Calibration (private): measurement (impure, timing), fits and the concurrent phase. Imports the runtime,
never :mod:`offload_tuner.inspection`; numpy and scikit-learn are imported here, never on the production path.
"""
