"""Shipping idstore to AWS: build dist/, upload it, render the EMR, Step Functions, Scheduler,
IAM and CloudFormation requests from config, submit runs, and check a deployment before it runs."""
