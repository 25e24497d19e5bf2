"""Frames the chat socket cannot use get an error frame in the envelope style, and the socket stays open and usable
(a probe's non-JSON text used to close it with 1011 and a traceback)."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async

from agents.models import Run
from agents.tests.test_chat_ws import communicator_for, receive_run

RUN_ID = "00000000-0000-0000-0000-000000000000"

# (what the client sends: text, or bytes for a binary frame; the error code; the field it concerns, if any)
BAD_FRAMES = [
    ("hello there", "PARSE_ERROR", None),
    ('{"type": "message", "text": "unterminated', "PARSE_ERROR", None),
    ("{'type': 'ping'}", "PARSE_ERROR", None),
    (b'{"type": "ping"}', "PARSE_ERROR", None),
    ("[" * 100_000 + "]" * 100_000, "INPUT_TOO_DEEP", None),
    ("[1, 2]", "VALIDATION_ERROR", "type"),
    ("null", "VALIDATION_ERROR", "type"),
    ('"message"', "VALIDATION_ERROR", "type"),
    ('{"type": 5}', "VALIDATION_ERROR", "type"),
    ('{"type": ["message"]}', "VALIDATION_ERROR", "type"),
    ('{"text": "no type"}', "VALIDATION_ERROR", "type"),
    ('{"type": "message"}', "VALIDATION_ERROR", "text"),
    ('{"type": "message", "text": 42}', "VALIDATION_ERROR", "text"),
    ('{"type": "message", "text": {"nested": "hi"}}', "VALIDATION_ERROR", "text"),
    ('{"type": "message", "text": "nul \\u0000 inside"}', "VALIDATION_ERROR", "text"),
    ('{"type": "message", "text": "lone \\ud800 surrogate"}', "VALIDATION_ERROR", "text"),
    (json.dumps({"type": "message", "text": "x" * 100_001}), "VALIDATION_ERROR", "text"),
    ('{"type": "message", "text": "hi", "conversation_id": "not-a-uuid"}', "CONVERSATION_NOT_FOUND", None),
    ('{"type": "message", "text": "hi", "conversation_id": {"id": 1}}', "CONVERSATION_NOT_FOUND", None),
    ('{"type": "message", "text": "hi", "conversation_id": 12}', "CONVERSATION_NOT_FOUND", None),
    ('{"type": "resume"}', "RUN_NOT_FOUND", None),
    ('{"type": "resume", "run_id": ["a"]}', "RUN_NOT_FOUND", None),
    (json.dumps({"type": "resume", "run_id": RUN_ID, "after_seq": "3"}), "VALIDATION_ERROR", "after_seq"),
    (json.dumps({"type": "resume", "run_id": RUN_ID, "after_seq": -1}), "VALIDATION_ERROR", "after_seq"),
    (json.dumps({"type": "resume", "run_id": RUN_ID, "after_seq": True}), "VALIDATION_ERROR", "after_seq"),
    ('{"type": "cancel"}', "RUN_NOT_FOUND", None),
    ('{"type": "cancel", "run_id": 3.5}', "RUN_NOT_FOUND", None),
]


@pytest.mark.runs
@pytest.mark.django_db(transaction=True)
async def test_every_bad_frame_gets_an_error_frame_and_the_socket_stays_usable(make_agent, scripted, user):
    await sync_to_async(make_agent)()
    communicator = communicator_for(user)
    assert (await communicator.connect())[0]
    for frame, code, field in BAD_FRAMES:
        if isinstance(frame, bytes):
            await communicator.send_to(bytes_data=frame)
        else:
            await communicator.send_to(text_data=frame)
        reply = await communicator.receive_json_from(timeout=10)
        assert reply["type"] == "error", (frame[:80], reply)
        error = reply["error"]
        assert error["code"] == code, (frame[:80], error)
        assert error["message"] and "Traceback" not in error["message"]
        if field:
            assert error["details"]["field"] == field, (frame[:80], error)
        await communicator.send_json_to({"type": "ping"})  # still open, still answering
        assert await communicator.receive_json_from() == {"type": "pong"}
    assert not await Run.objects.aexists()  # nothing was half-started

    scripted.queue_response(content="still here")
    await communicator.send_json_to({"type": "message", "text": "hello"})
    _run, events = await receive_run(communicator)
    assert events[-1]["type"] == "final" and events[-1]["data"]["output"] == "still here"
    await communicator.disconnect()
