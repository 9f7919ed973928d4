"""Inspection (private): the command line, reports, checks and plots, on top of the runtime and calibration."""
