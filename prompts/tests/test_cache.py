"""The cached fetch is never stale: saves, label moves and deletes invalidate it, in this process and others."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agent_platform.api.errors import PlatformError
from prompts import cache as prompt_cache
from prompts import selectors, services

pytestmark = pytest.mark.django_db


def fetch_render(**kw):
    return selectors.render_prompt("p", {"who": "Ada"}, **kw)


def test_cached_fetch_hits_no_database():
    services.prompt_create(name="p", text="Hi {{ who }}")
    fetch_render()
    with CaptureQueriesContext(connection) as queries:
        assert fetch_render().text == "Hi Ada"
    assert len(queries) == 0
    with CaptureQueriesContext(connection) as queries:
        assert fetch_render(label="latest").text == "Hi Ada"  # first fetch of this ref: loaded
    assert len(queries) > 0
    with CaptureQueriesContext(connection) as queries:
        fetch_render(label="latest")
    assert len(queries) == 0


def test_save_invalidates_the_cache():
    services.prompt_create(name="p", text="Hi {{ who }}")
    assert fetch_render().text == "Hi Ada"
    assert fetch_render(label="latest").text == "Hi Ada"
    services.prompt_update(name="p", text="Hello {{ who }}")
    assert fetch_render().text == "Hello Ada"
    assert fetch_render(label="latest").text == "Hello Ada"
    services.prompt_rollback(name="p", version=1)
    assert fetch_render().text == "Hi Ada" and fetch_render().version == 3


def test_label_move_invalidates_the_cache(admin_user):
    services.prompt_create(name="p", text="Hi {{ who }}", labels=["production"])
    services.prompt_update(name="p", text="Hello {{ who }}")
    assert fetch_render().text == "Hi Ada"
    services.label_move(name="p", label="production", version=2, user=admin_user)
    assert fetch_render().text == "Hello Ada"
    services.label_move(name="p", label="staging", version=1)
    assert fetch_render(label="staging").text == "Hi Ada"
    services.label_move(name="p", label="staging", version=2)
    assert fetch_render(label="staging").text == "Hello Ada"
    services.label_delete(name="p", label="staging")
    with pytest.raises(PlatformError) as err:
        fetch_render(label="staging")
    assert err.value.code == "PROMPT_NOT_FOUND"


def test_delete_invalidates_the_cache():
    services.prompt_create(name="p", text="Hi {{ who }}")
    fetch_render()
    services.prompt_delete(name="p")
    with pytest.raises(PlatformError):
        fetch_render()
    services.prompt_create(name="p", text="New {{ who }}")
    assert fetch_render().text == "New Ada"


def test_another_process_sees_the_change():
    """A second process has its own in-process cache; the shared stamp makes its entries stale."""
    services.prompt_create(name="p", text="Hi {{ who }}")
    assert fetch_render().text == "Hi Ada"
    # simulate the other process: its local entry was filled before the save (stamp S1) ...
    stale_stamp = prompt_cache.current_stamp("p")
    stale = prompt_cache.local_get("p", "l:", stale_stamp)
    services.prompt_update(name="p", text="Hello {{ who }}")
    # ... and now it holds that entry again: the stamp no longer matches, so it is not served
    prompt_cache.local_put("p", "l:", stale_stamp, stale)
    assert fetch_render().text == "Hello Ada"


def test_shared_cache_serves_a_cold_process_without_the_database():
    services.prompt_create(name="p", text="Hi {{ who }}")
    fetch_render()
    prompt_cache.clear_local()  # a fresh process
    with CaptureQueriesContext(connection) as queries:
        assert fetch_render().text == "Hi Ada"
    assert len(queries) == 0


def test_get_prompt_version_fetch_is_cached_and_correct():
    services.prompt_create(name="p", text="Hi {{ who }}")
    services.prompt_update(name="p", text="Hello {{ who }}")
    assert selectors.get_prompt(name="p", version=1).text == "Hi {{ who }}"
    assert selectors.get_prompt(name="p", version=2).text == "Hello {{ who }}"


def test_stamp_ttl_option_still_sees_this_process_changes_at_once(settings, admin_user):
    settings.PROMPT_CACHE_STAMP_TTL_MS = 60_000
    services.prompt_create(name="p", text="Hi {{ who }}", labels=["production"])
    assert fetch_render().text == "Hi Ada"
    services.prompt_update(name="p", text="Hello {{ who }}")
    assert fetch_render(label="latest").text == "Hello Ada"
    services.label_move(name="p", label="production", version=2, user=admin_user)
    assert fetch_render().text == "Hello Ada"


def test_stamp_ttl_bounds_staleness_from_other_processes(settings):
    """Documented trade-off: with a TTL, another process's change may be seen up to TTL late; without it, never."""
    services.prompt_create(name="p", text="Hi {{ who }}")
    fetch_render()
    stale_stamp = prompt_cache.current_stamp("p")
    stale = prompt_cache.local_get("p", "l:", stale_stamp)
    services.prompt_update(name="p", text="Hello {{ who }}")
    prompt_cache.local_put("p", "l:", stale_stamp, stale)  # the other process's entry, just validated
    settings.PROMPT_CACHE_STAMP_TTL_MS = 60_000
    assert fetch_render().text == "Hi Ada"
    settings.PROMPT_CACHE_STAMP_TTL_MS = 0
    assert fetch_render().text == "Hello Ada"


def test_a_rolled_back_save_leaves_no_phantom_version_in_the_cache():
    from django.db import transaction

    services.prompt_create(name="p", text="Hi {{ who }}")
    assert fetch_render().text == "Hi Ada"

    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        services.prompt_update(name="p", text="Hello {{ who }}")
        assert fetch_render().text == "Hello Ada"  # the transaction reads its own write ...
        raise Abort
    assert fetch_render().text == "Hi Ada"  # ... but nobody sees it after the rollback
    assert fetch_render().version == 1
