"""Plain boto3 read-backs for tests and the demo: what the table really holds."""
from typing import Dict, List


def scan_items(client, table: str) -> List[Dict]:
    """Every item of `table`, by a sequential paginated Scan (independent of idstore's scanner)."""
    items, kwargs = [], {"TableName": table}
    while True:
        page = client.scan(**kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def scan_key_set(client, table: str, key_attribute: str) -> set:
    return {item[key_attribute]["S"] for item in scan_items(client, table)}
