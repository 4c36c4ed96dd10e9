"""Reading the id set: JDBC with hash-predicate partitions, or Redshift UNLOAD."""
