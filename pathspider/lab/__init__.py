"""The lab: a real, impaired Internet path built from Linux network namespaces."""
