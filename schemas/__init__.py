"""Pure data models: the public event contract and the settings object."""
