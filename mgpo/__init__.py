"""mgpo."""
