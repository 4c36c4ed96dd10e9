"""DynamoDB access: budgeted batch writer, parallel scanner, rate and retry policy."""
