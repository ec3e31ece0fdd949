"""Masking: which columns are sensitive, how their values are hidden, and the last-net detectors."""
