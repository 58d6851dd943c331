"""Export formats built from a trained version's artifacts (no torch here)."""
