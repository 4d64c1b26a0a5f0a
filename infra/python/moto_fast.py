"""Faster request parsing and answer encoding for moto's DynamoDB item operations.

moto 5.2 parses every request and encodes every answer by walking botocore's service model. For
DynamoDB's item operations that walk is most of moto's time: a 100-key BatchGetItem takes ~68 ms,
of which ~60 ms is encoding the answer; a 25-item BatchWriteItem spends ~2 ms parsing its request.
The DynamoDB JSON protocol is plain JSON both ways, so for the operations below this module reads
the request with `json.loads` and writes the answer with `json.dumps`, and leaves everything else
(errors, binary attributes, timestamps, other operations and services) to moto's own code.

Three more costs are cut where moto repeats work whose answer cannot change:
- every new item re-sums the size of all its attributes once per attribute (quadratic); it is now
  summed once, with the same 400 KB limit;
- every request lists moto's package directory from disk to route it; the list is now read once;
- every request lists its handler class's methods by introspection; the list is now made once;
- every Query on the table's own key lists and sorts the whole table (every shop's items) to keep
  one partition; it now lists that partition only (same items, same order), so a shop's Query
  costs what its own partition holds, not what 1,000 shops hold (the many-shop tick);
- SQS: every message a ReceiveMessage looks at re-computes all of its queue's attributes (three
  counts over every message) to read the retention period, so a receive from a queue holding n
  messages costs O(n²) (5,000 queued jobs: ~1 receive a second); the period is now read directly.

Written against moto 5.2.5 (pinned in requirements-stack.txt); re-check on an upgrade.

Set MOTO_FAST_VERIFY=1 to run both paths on every request and fail loudly where they differ: the
test suite was run that way to check that the shortcut answers exactly what moto would.
"""

import functools
import json
import os
import sys
import threading

from moto import backends
from moto.core import responses as core_responses
from moto.core.responses import ActionResult
from moto.core.utils import get_service_model, unix_time
from moto.dynamodb.exceptions import ItemSizeTooLarge
from moto.dynamodb.models.dynamo_type import DynamoType, Item, LimitedSizeDict
from moto.dynamodb.models.table import Table
from moto.dynamodb.models.utilities import bytesize
from moto.dynamodb.responses import DynamoHandler
from moto.sqs.models import SQSBackend

# Item operations whose requests and answers hold no timestamps. Binary attributes ("B"/"BS") are
# the one thing the JSON shortcut would get wrong; requests that might hold them take moto's path.
FAST_ACTIONS = frozenset(
    {
        "GetItem",
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "BatchGetItem",
        "BatchWriteItem",
        "Query",
        "Scan",
        "TransactGetItems",
        "TransactWriteItems",
    }
)

VERIFY = os.environ.get("MOTO_FAST_VERIFY") == "1"


class FastPathMismatch(AssertionError):
    pass


def _may_hold_binary(data: bytes) -> bool:
    return b'"B"' in data or b'"BS"' in data


class _NotPlain(Exception):
    """A value the shortcut does not encode (bytes, timestamps, numbers as Decimal...)."""


def _shaped(value, shape):
    """`value` cut to what the output `shape` declares, as moto's serializer does: members it does
    not know and None values are left out."""
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            raise _NotPlain
        members = shape.members
        return {
            k: _shaped(v, members[k])
            for k, v in value.items()
            if v is not None and k in members
        }
    if kind == "list":
        if not isinstance(value, list):
            raise _NotPlain
        return [_shaped(v, shape.member) for v in value]
    if kind == "map":
        if not isinstance(value, dict):
            raise _NotPlain
        return {k: _shaped(v, shape.value) for k, v in value.items() if v is not None}
    if kind == "string" and isinstance(value, str):
        return value
    if kind == "boolean" and isinstance(value, bool):
        return value
    if kind in ("integer", "long") and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == "double" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    raise _NotPlain


def _fast_body(result, output_shape) -> bytes | None:
    if output_shape is None:
        return None
    try:
        shaped = _shaped(result, output_shape)
    except _NotPlain:
        return None
    return json.dumps(shaped, separators=(",", ":")).encode("utf-8")


# moto's own figure (LimitedSizeDict): between the documented 400 KB and the measured 409-410 KB.
ITEM_SIZE_LIMIT = 405000


def _item_init(self, hash_key, range_key, attrs) -> None:
    self.hash_key = hash_key
    self.range_key = range_key
    values = {key: DynamoType(value) for key, value in attrs.items()}
    # The same sum LimitedSizeDict makes on every insert; the last insert's sum is the largest.
    if sum(bytesize(key) + value.size() for key, value in values.items()) > ITEM_SIZE_LIMIT:
        raise ItemSizeTooLarge
    self.attrs = LimitedSizeDict()
    dict.update(self.attrs, values)


# The partition a Query on the table's own key reads, while moto's `Table.query` runs.
_QUERIED = threading.local()


def _partition_items(table, hash_key) -> list:
    """What `Table.all_items` answers, cut to one partition: moto keeps items as
    {hash: {range: item}} and its Query keeps exactly the items whose hash key equals the
    queried one (then sorts them by range key), so listing that partition alone is the same."""
    hash_set = table.items.get(hash_key)  # .get: `items` is a defaultdict
    if hash_set is None:
        return []
    if table.range_key_attr:
        return sorted(hash_set.values(), key=lambda item: item.range_key)
    return [hash_set]


def _install_query_shortcut() -> None:
    original_all_items = Table.all_items
    original_query = Table.query

    def all_items(self):
        queried = getattr(_QUERIED, "partition", None)
        if queried is not None and queried[0] is self:
            return _partition_items(self, queried[1])
        return original_all_items(self)

    def query(self, hash_key, *args, **kwargs):
        index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
        if index_name or hash_key is None:
            return original_query(self, hash_key, *args, **kwargs)
        _QUERIED.partition = (self, hash_key)
        try:
            fast = original_query(self, hash_key, *args, **kwargs)
        finally:
            _QUERIED.partition = None
        if VERIFY:
            slow = original_query(self, hash_key, *args, **kwargs)
            if _query_view(slow) != _query_view(fast):
                _report("Query", "Query", _query_view(slow), _query_view(fast))
        return fast

    Table.all_items = all_items
    Table.query = query


def _query_view(result):
    items, scanned, last_key = result
    return [item.to_json() for item in items], scanned, last_key


def _install_retention_shortcut() -> None:
    original = SQSBackend.is_message_valid_based_on_retention_period

    def is_message_valid_based_on_retention_period(self, queue_name, message) -> bool:
        # What `get_queue_attributes(queue, ["MessageRetentionPeriod"])` answers, without
        # computing the queue's other attributes (message counts) first.
        retention_period = self.get_queue(queue_name).message_retention_period
        valid = retention_period + message.sent_timestamp / 1000 > unix_time()
        if VERIFY and original(self, queue_name, message) != valid:
            _report("retention check", "ReceiveMessage", not valid, valid)
        return valid

    SQSBackend.is_message_valid_based_on_retention_period = (
        is_message_valid_based_on_retention_period
    )


def install() -> None:
    _install_query_shortcut()
    _install_retention_shortcut()
    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules
    Item.__init__ = _item_init
    core_responses.method_names_from_class = functools.cache(
        core_responses.method_names_from_class
    )

    original_parse = DynamoHandler.parse_parameters
    original_serialized = DynamoHandler.serialized

    def parse_parameters(self, request) -> None:
        action = self._get_action()
        data = request.data
        if action not in FAST_ACTIONS or _may_hold_binary(data):
            return original_parse(self, request)
        try:
            params = json.loads(data or b"{}")
        except ValueError:
            return original_parse(self, request)
        if VERIFY:
            original_parse(self, request)
            if self.params != params:
                _report("request", action, self.params, params)
        self.params = params

    def serialized(self, action_result: ActionResult):
        action = self._get_action()
        result = action_result.result
        if action not in FAST_ACTIONS or isinstance(result, Exception):
            return original_serialized(self, action_result)
        body = _fast_body(result, _output_shape(action))
        if body is None:
            return original_serialized(self, action_result)
        if VERIFY:
            status, _headers, slow_body = original_serialized(self, action_result)
            slow = json.loads(slow_body or b"{}")
            if status != 200 or slow != json.loads(body):
                _report("answer", action, slow, json.loads(body))
        headers = {"Content-Type": "application/x-amz-json-1.0"}
        headers.update(self.response_headers)
        return 200, headers, body

    DynamoHandler.parse_parameters = parse_parameters
    DynamoHandler.serialized = serialized


_OUTPUT_SHAPES: dict = {}


def _output_shape(action: str):
    if action not in _OUTPUT_SHAPES:
        model = get_service_model("dynamodb")
        _OUTPUT_SHAPES[action] = model.operation_model(action).output_shape
    return _OUTPUT_SHAPES[action]


def _report(what: str, action: str, slow, fast) -> None:
    message = f"moto_fast: {what} of {action} differs\n moto: {slow!r}\n fast: {fast!r}"
    print(message, file=sys.stderr, flush=True)
    raise FastPathMismatch(message)
