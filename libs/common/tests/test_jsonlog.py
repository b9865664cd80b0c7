"""Log lines are one JSON object each, with extras merged in."""

from __future__ import annotations

import json
import logging

from atlasloop.common.jsonlog import JsonFormatter


def test_json_line_with_extras():
    record = logging.LogRecord("atlasloop.x", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    record.case_id = "c-1"
    line = json.loads(JsonFormatter("storage").format(record))
    assert line["message"] == "hello world"
    assert line["service"] == "storage"
    assert line["case_id"] == "c-1"
    assert line["level"] == "INFO"
