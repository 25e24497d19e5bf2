"""The agents list and the chat page (server-rendered history, safe markdown)."""

import pytest

from agents import services

pytestmark = pytest.mark.django_db


def test_chat_page_needs_login(client, make_agent):
    make_agent()
    response = client.get("/chat/helper/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


@pytest.mark.runs
def test_chat_page_shows_history_as_safe_markdown(client, user, make_agent, scripted):
    agent = make_agent(tools=[])
    scripted.queue_response(content="**bold** <img src=x onerror=alert(1)> [x](javascript:alert(1))")
    services.run_start(agent=agent, input="<b>hi</b>", user=user, wait=True)
    client.force_login(user)
    html = client.get("/chat/helper/").content.decode()
    assert "<strong>bold</strong>" in html
    assert "<img" not in html and 'href="javascript' not in html
    assert "&lt;b&gt;hi&lt;/b&gt;" in html  # the user's text is escaped too
    assert "/dashboard/traces/" in html and "tokens" in html
    assert client.get("/chat/helper/?new=1").content.decode().count("msg-assistant") == 0


def test_unknown_agent_chat_is_404(client, user):
    client.force_login(user)
    assert client.get("/chat/nobody/").status_code == 404


def test_agents_list_page_filters(client, user, make_agent):
    make_agent(slug="alpha", category="math")
    make_agent(slug="beta", category="writing")
    client.force_login(user)
    html = client.get("/dashboard/agents/?category=math").content.decode()
    assert "alpha" in html and "/chat/beta/" not in html


@pytest.mark.runs
def test_admin_pages_render_and_refuse_unknown_tools(client, admin_user, make_agent, scripted):
    agent = make_agent()
    from agents import services

    run = services.run_start(agent=agent, input="hi", user=admin_user, wait=True)
    client.force_login(admin_user)
    for url in [
        "/admin/agents/agentdefinition/",
        f"/admin/agents/agentdefinition/{agent.pk}/change/",
        f"/admin/agents/agentdefinition/{agent.pk}/history/",
        "/admin/agents/run/",
        f"/admin/agents/run/{run.pk}/change/",
        "/admin/agents/conversation/",
        f"/admin/agents/conversation/{run.conversation_id}/change/",
        "/admin/agents/runevent/",
    ]:
        assert client.get(url).status_code == 200, url
    response = client.post(
        "/admin/agents/agentdefinition/add/",
        {
            "slug": "bad",
            "name": "Bad",
            "model_endpoint": "mock/x",
            "system_prompt_label": "production",
            "parameters": "{}",
            "tools": '["rm_rf"]',
            "memory": "{}",
            "mode": "tools",
            "max_iterations": 5,
            "max_total_tokens": 1000,
            "max_wall_seconds": 60,
            "enabled": "on",
        },
    )
    assert response.status_code == 200 and "Unknown tool(s): rm_rf" in response.content.decode()
