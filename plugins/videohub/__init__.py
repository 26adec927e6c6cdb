"""Protocol plugin videohub (in progress)."""
