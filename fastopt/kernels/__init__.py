"""The math: scalar update rules (``rules``) compiled for each target (``cpu``)."""
