"""Numba CPU kernels, each with its NumPy twin as the reference (see issue 6)."""
