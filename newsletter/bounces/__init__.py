"""Bounces and complaints that arrive after the relay said 250: provider events (`providers/`)."""
