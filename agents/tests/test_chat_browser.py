"""The chat page in headless Chromium against daphne: send a message, see the answer stream, see it rendered safely."""

import os
import shutil
import socket
import threading
import time

import pytest

CHROMIUM = "/usr/bin/chromium"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM), reason="needs Debian's chromium"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DaphneThread(threading.Thread):
    """daphne serving the project's ASGI application from a thread of this process (it shares the test database)."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.ready = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            from daphne.endpoints import build_endpoint_description_strings
            from daphne.server import Server

            from agent_platform.asgi import application

            self.server = Server(
                application=application,
                endpoints=build_endpoint_description_strings(host="127.0.0.1", port=self.port),
                signal_handlers=False,
                verbosity=0,
                ready_callable=self.ready.set,
            )
            self.server.run()
        except BaseException as exc:  # surfaced by the fixture
            self.error = exc
            self.ready.set()

    def stop(self) -> None:
        from twisted.internet import reactor

        reactor.callFromThread(reactor.stop)


@pytest.fixture
def daphne_server():
    port = _free_port()
    thread = DaphneThread(port)
    thread.start()
    if not thread.ready.wait(20) or thread.error:
        pytest.fail(f"daphne did not start: {thread.error!r}")
    yield f"http://127.0.0.1:{port}"
    thread.stop()
    thread.join(10)


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        try:
            instance = playwright.chromium.launch(
                executable_path=CHROMIUM,
                args=["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
            )
        except Exception as exc:
            pytest.skip(f"chromium could not be launched: {exc}")
        yield instance
        instance.close()


@pytest.fixture
def helper_agent(make_agent):
    return make_agent(tools=["calculator"])


@pytest.fixture
def session_cookie(user, client, settings):
    """Log in before the browser starts (playwright's sync API keeps an event loop running: no ORM after it)."""
    client.force_login(user)
    return {"name": settings.SESSION_COOKIE_NAME, "value": client.cookies[settings.SESSION_COOKIE_NAME].value}


def test_chat_page_streams_the_answer_and_renders_it_as_safe_markdown(
    helper_agent, scripted, session_cookie, daphne_server, browser
):
    scripted.token_delay = 0.03
    scripted.queue_response(tool_calls=[{"name": "calculator", "arguments": {"expression": "6*7"}}])
    scripted.queue_response(
        content='The answer is **42**. <img src=x onerror="window.__pwned=1"> [link](javascript:window.__pwned=2) '
        + " ".join(["and", "that", "is", "all"] * 10)
    )
    context = browser.new_context()
    context.add_cookies([{**session_cookie, "url": daphne_server}])
    page = context.new_page()
    page.goto(f"{daphne_server}/chat/helper/")
    page.wait_for_function("() => !document.getElementById('chat-send').disabled")
    time.sleep(0.2)  # let the socket open
    page.fill("#chat-input", "what is 6*7?")
    page.press("#chat-input", "Enter")

    # the answer arrives token by token: seen partially before it is complete
    page.wait_for_function(
        "() => { const s = document.querySelector('.msg-assistant .streaming');"
        " return s && s.textContent.length > 0 && !s.closest('.msg').dataset.done; }",
        timeout=20_000,
    )
    assert "6*7" in page.inner_text(".msg-assistant .tool")
    page.wait_for_selector(".msg-assistant[data-done='1']", timeout=30_000)

    assert page.inner_text(".msg-assistant .md strong") == "42"
    assert page.evaluate("() => window.__pwned") is None
    assert page.query_selector(".msg-assistant .md img") is None
    assert page.query_selector(".msg-assistant .md a[href^='javascript']") is None
    meta = page.inner_text(".msg-assistant .meta")
    assert "tokens" in meta
    assert page.get_attribute(".msg-assistant .meta a", "href").startswith("/dashboard/traces/")

    # history on reload, rendered on the server, still safe
    page.reload()
    page.wait_for_selector(".msg-assistant .md strong")
    assert page.inner_text(".msg-user .text") == "what is 6*7?"
    assert page.inner_text(".msg-assistant .md strong") == "42"
    assert page.evaluate("() => window.__pwned") is None
    context.close()
