"""fedge."""
