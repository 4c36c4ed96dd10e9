"""Items and write requests in DynamoDB's wire format, their sizes, costs and limits."""
import base64
import math
from decimal import Decimal
from typing import Any, Dict, Optional, Tuple

from idstore.validation import MAX_KEY_BYTES  # the partition key limit: one definition, also for the driver's checks

MAX_BATCH_REQUESTS = 25
MAX_BATCH_BYTES = 16 * 1024 * 1024
MAX_ITEM_BYTES = 400 * 1024

PUT, DELETE = "put", "delete"

# why a request is refused before it is sent; each has a stats column rejected_<reason>
REJECTION_REASONS = ("key_missing", "key_too_long", "item_too_large")


def attribute(value: Any) -> Optional[Dict[str, Any]]:
    """A Python value as a DynamoDB attribute value; None means 'leave the attribute out'."""
    if value is None:
        return None
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, (int, float, Decimal)):
        if isinstance(value, float) and not math.isfinite(value):
            return {"S": str(value)}  # DynamoDB numbers cannot be NaN or infinite
        return {"N": str(value)}
    if isinstance(value, (bytes, bytearray)):
        return {"B": base64.b64encode(bytes(value)).decode("ascii")}  # wire format: base64
    return {"S": str(value)}


def _number_size(raw: str) -> int:
    """DynamoDB's rule: 1 byte per 2 significant digits, plus 1 (leading/trailing zeros trimmed)."""
    digits = raw.lstrip("+-").lower().split("e")[0].replace(".", "").strip("0")
    return (len(digits) + 1) // 2 + 1


def _value_size(value: Dict[str, Any]) -> int:
    (kind, raw), = value.items()
    if kind == "S":
        return len(raw.encode("utf-8"))
    if kind == "N":
        return _number_size(raw)
    if kind == "B":
        return len(base64.b64decode(raw))
    return 1  # BOOL, NULL


def item_size(item: Dict[str, Dict[str, Any]]) -> int:
    """Bytes DynamoDB counts for an item: names plus values, in UTF-8."""
    return sum(len(name.encode("utf-8")) + _value_size(value) for name, value in item.items())


def write_units(size: int) -> int:
    """WCU a put of `size` bytes costs: 1 per KB, rounded up per item (a delete costs at least 1)."""
    return max(1, -(-size // 1024))


def build_request(action: str, key_attribute: str, key: str, attributes: Dict[str, Any]) -> Tuple[Dict, int]:
    """(request in BatchWriteItem form, its size in bytes)."""
    key_value = {key_attribute: {"S": key}}
    if action == DELETE:
        return {"DeleteRequest": {"Key": key_value}}, item_size(key_value)
    item = dict(key_value)
    for name, value in attributes.items():
        if name == key_attribute:
            continue  # the key comes from the key column, never from an attribute
        encoded = attribute(value)
        if encoded is not None:
            item[name] = encoded
    return {"PutRequest": {"Item": item}}, item_size(item)


def key_problem(key: Any) -> Optional[str]:
    """Why `key` cannot be a string partition key at all (checked before building a request)."""
    if key is None or key == "":
        return "key_missing"  # DynamoDB refuses the whole batch for an empty key
    if len(str(key).encode("utf-8")) > MAX_KEY_BYTES:
        return "key_too_long"
    return None
