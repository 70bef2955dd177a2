"""The Observer (placeholder until the Observer issue lands)."""
