"""Items and write requests in DynamoDB's wire format, their sizes and limits."""
import math
from decimal import Decimal
from typing import Any, Dict, Optional, Tuple

MAX_BATCH_REQUESTS = 25
MAX_BATCH_BYTES = 16 * 1024 * 1024
MAX_ITEM_BYTES = 400 * 1024
MAX_KEY_BYTES = 2048

PUT, DELETE = "put", "delete"


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
    return {"S": str(value)}


def _value_size(value: Dict[str, Any]) -> int:
    (kind, raw), = value.items()
    if kind == "S":
        return len(raw.encode("utf-8"))
    if kind == "N":
        return len(raw) // 2 + 1  # roughly one byte per two digits
    return 1  # BOOL, NULL


def item_size(item: Dict[str, Dict[str, Any]]) -> int:
    """Bytes DynamoDB counts for an item: names plus values, in UTF-8."""
    return sum(len(name.encode("utf-8")) + _value_size(value) for name, value in item.items())


def write_units(size: int) -> int:
    """WCU a put of `size` bytes costs: 1 per KB, rounded up per item."""
    return max(1, -(-size // 1024))


def build_request(action: str, key_attribute: str, key: str, attributes: Dict[str, Any]) -> Tuple[Dict, int]:
    """(request in BatchWriteItem form, its size in bytes)."""
    key_value = {key_attribute: {"S": key}}
    if action == DELETE:
        return {"DeleteRequest": {"Key": key_value}}, item_size(key_value)
    item = dict(key_value)
    for name, value in attributes.items():
        encoded = attribute(value)
        if encoded is not None:
            item[name] = encoded
    return {"PutRequest": {"Item": item}}, item_size(item)


def rejection(key: str, size: int) -> Optional[str]:
    """Why DynamoDB would refuse this request, checked before it is sent."""
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        return "key_too_long"
    if size > MAX_ITEM_BYTES:
        return "item_too_large"
    return None
