"""The set as ImportTable's input, executor side: one DynamoDB JSON line an item, `{"Item": {...}}`.

Each item is built by the writer's own code from the same Arrow rows (`rows_from_arrow`,
`build_request`), so an imported item and a put item are typed alike, attribute by attribute,
and are the same size. An item over DynamoDB's 400 KB limit is flagged, as the writer refuses it.
"""
import json
from typing import Any, Dict, Iterator, List, Mapping, Tuple

import pyarrow as pa

from idstore.dynamodb import items as I
from idstore.dynamodb.writer import rows_from_arrow

STAGED_DDL = "key string, line string, bytes long, write_units long, too_large boolean"
_SCHEMA = pa.schema([("key", pa.string()), ("line", pa.string()), ("bytes", pa.int64()),
                     ("write_units", pa.int64()), ("too_large", pa.bool_())])


def item_line(key_attribute: str, key: str, attributes: Mapping[str, Any]) -> Tuple[str, int]:
    """(the item's DynamoDB JSON line, the item's size as DynamoDB counts it)."""
    request, size = I.build_request(I.PUT, key_attribute, key, dict(attributes))
    return json.dumps({"Item": request["PutRequest"]["Item"]}, ensure_ascii=False, separators=(",", ":")), size


def staging_encoder(key_column: str, key_attribute: str, constants: Mapping[str, Any]):
    """The function for DataFrame.mapInArrow: rows (key column + attribute columns) -> STAGED_DDL rows.

    `bytes` is the line's UTF-8 length with its newline, what the import reads and bills;
    `write_units` what a put of the item would cost, for the write path's side of the plan.
    """

    def encode(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            columns: Dict[str, List[Any]] = {name: [] for name in _SCHEMA.names}
            for key, attributes in rows_from_arrow([batch], key_column, constants):
                key = key if isinstance(key, str) else str(key)
                line, size = item_line(key_attribute, key, attributes)
                columns["key"].append(key)
                columns["line"].append(line)
                columns["bytes"].append(len(line.encode("utf-8")) + 1)
                columns["write_units"].append(I.write_units(size))
                columns["too_large"].append(size > I.MAX_ITEM_BYTES)
            yield pa.RecordBatch.from_pydict(columns, schema=_SCHEMA)

    return encode
