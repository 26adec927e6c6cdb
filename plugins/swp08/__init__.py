"""Protocol plugin swp08 (in progress)."""
