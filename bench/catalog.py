"""The agent catalog API over 1,500 agents (seed 004's figure): list, category filter, text search.

Platform path: a full request through Django and DRF (`GET /api/v1/agents/...` with an API key: middleware,
authentication, throttling, the visibility filter of a non-staff user, pagination, serialisation).
Baseline: the bare ORM doing the same read — `count()` plus the first page of `values()` with the same filter.
Target: p95 at most 50 ms for every case.

Runs on its own throw-away test database (SQLite in memory, or `test_bench_catalog_<pid>` on PostgreSQL).
"""

from __future__ import annotations

import os

from bench.harness import Comparison, measure, report, setup_django

AGENTS = 1500
CATEGORIES = ["support", "sales", "math", "writing", "research", "ops", "legal", "hr", "finance", "code"]
WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "omicron",
    "pi",
    "rho",
    "sigma",
    "tau",
]


def main() -> None:
    os.environ.setdefault("CACHE_KEY_PREFIX", f"benchcatalog{os.getpid()}")
    os.environ.setdefault("THROTTLE_USER_RATE", "10000000/min")
    setup_django()
    from django.conf import settings
    from django.db import connection

    connection.settings_dict["TEST"]["NAME"] = f"test_bench_catalog_{os.getpid()}" if settings.USING_POSTGRES else None
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        run()
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


def run() -> None:
    from django.contrib.auth import get_user_model
    from django.db.models import Q
    from django.test import Client

    from agent_platform.accounts.services import api_key_create
    from agents.models import AgentDefinition

    user = get_user_model().objects.create_user(username="bench", password="bench-password-123")
    key = api_key_create(user=user, name="bench").raw_key
    AgentDefinition.objects.bulk_create(
        [
            AgentDefinition(
                slug=f"agent-{i:04d}",
                name=f"Agent {i} {WORDS[i % len(WORDS)]}",
                description=f"Handles {WORDS[(i * 7) % len(WORDS)]} and {WORDS[(i * 3) % len(WORDS)]} requests.",
                category=CATEGORIES[i % len(CATEGORIES)],
                model_endpoint="mock/bench",
                tools=["calculator"] if i % 2 else [],
                owner=user if i % 10 == 0 else None,
            )
            for i in range(AGENTS)
        ],
        batch_size=500,
    )
    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    fields = ["id", "slug", "name", "description", "category", "model_endpoint", "tools", "mode", "enabled"]

    def bare(category: str | None = None, search: str | None = None):
        def query():
            qs = AgentDefinition.objects.filter(Q(owner__isnull=True, team__isnull=True) | Q(owner=user))
            if category:
                qs = qs.filter(category=category)
            if search:
                qs = qs.filter(Q(slug__icontains=search) | Q(name__icontains=search) | Q(description__icontains=search))
            qs = qs.order_by("slug")
            return qs.count(), list(qs.values(*fields)[:50])

        return query

    def api(path: str):
        def call():
            response = client.get(path)
            assert response.status_code == 200, response.content[:300]
            return response

        return call

    cases = [
        ("list page 1 (50 of 1,500)", "/api/v1/agents/", bare()),
        ("list page 20", "/api/v1/agents/?page=20", None),
        ("category filter", "/api/v1/agents/?category=math", bare(category="math")),
        ("text search", "/api/v1/agents/?search=omicron", bare(search="omicron")),
        ("category + search", "/api/v1/agents/?category=code&search=sigma", bare(category="code", search="sigma")),
    ]
    count = api("/api/v1/agents/")().json()["count"]
    assert count == AGENTS, count
    comparisons = []
    for name, path, baseline in cases:
        ours = measure(api(path), iterations=300, warmup=20, label=name)
        base = measure(baseline, iterations=300, warmup=20, label="bare ORM") if baseline else None
        comparisons.append(Comparison(name, ours, base, target="p95 <= 50 ms", met=ours.p95_ms <= 50))
    report(
        name="catalog",
        title=f"Agent catalog API over {AGENTS} agents vs the bare ORM query",
        comparisons=comparisons,
        extra={"agents": AGENTS},
    )


if __name__ == "__main__":
    main()
