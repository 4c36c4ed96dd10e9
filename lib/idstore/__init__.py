"""idstore: sync a program's id set from Redshift into DynamoDB, and filter S3
event archives down to the events of that set. PySpark jobs for Amazon EMR."""

__version__ = "0.1.0"
