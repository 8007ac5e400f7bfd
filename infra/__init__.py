"""Embedded launcher, production configs and the `resonate` command line."""
