"""Offline helper scripts for model conversion and test fixtures."""
