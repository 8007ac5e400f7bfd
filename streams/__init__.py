"""Faust agents: thin I/O loops around the pure functions next to them."""
