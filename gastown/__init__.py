"""gastown."""
