"""Failure-event archives: reading dt= partitions, and filtering them by the id set."""
