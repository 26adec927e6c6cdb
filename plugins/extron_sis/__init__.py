"""Protocol plugin extron_sis (in progress)."""
