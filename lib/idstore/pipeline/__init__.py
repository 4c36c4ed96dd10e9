"""The two jobs end to end (sync, filter), and what they share: arguments, run ids, reports."""
