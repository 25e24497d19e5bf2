"""The agent rules hold whoever writes: the service refuses what the API serializer and the catalog refuse."""

import pytest

from agent_platform.api.errors import PlatformError
from agents import services
from agents.models import AgentDefinition

pytestmark = pytest.mark.django_db


def test_the_service_refuses_a_bad_definition_and_writes_nothing():
    with pytest.raises(PlatformError) as caught:
        services.agent_create(data={"slug": "x", "name": "X", "model_endpoint": "mock/x", "tools": ["shell"]})
    assert caught.value.code == "VALIDATION_ERROR"
    assert caught.value.details["field"] == "tools"
    assert "Unknown tool(s): shell" in caught.value.message
    assert not AgentDefinition.objects.exists()


def test_every_bad_field_is_named_and_an_update_leaves_the_stored_row_as_it_was():
    agent = services.agent_create(data={"slug": "ok", "name": "OK", "model_endpoint": "mock/ok"})
    with pytest.raises(PlatformError) as caught:
        services.agent_update(
            agent=agent, data={"max_iterations": 0, "model_endpoint": "", "memory": {"max_messages": -1}}
        )
    fields = caught.value.details["fields"]
    assert set(fields) == {"max_iterations", "model_endpoint", "memory"}
    agent.refresh_from_db()
    assert agent.max_iterations == 10 and agent.model_endpoint == "mock/ok"
