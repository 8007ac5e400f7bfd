"""Offline evaluation harness for sequential music recommendation (data, metrics, models)."""
