"""pytest fixtures for the lab (filled in by the lab issue)."""
