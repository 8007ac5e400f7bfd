"""Torch modules, the audio front end, training and evaluation."""
