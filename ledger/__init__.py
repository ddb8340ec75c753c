"""Write side: lots, genealogy, QC decisions and users as immutable events."""
