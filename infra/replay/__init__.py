"""Live quality: a real log replayed through the running stack (`resonate replay`)."""
