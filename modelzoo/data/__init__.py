"""Data readers for the published layouts and physics-informed synthetic generators."""
