"""Datasets: CSV/JSONL import with bad rows (atomic, every row's error named), export round trip, items from
traces, versions; through the API and the services."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from agent_platform.api.errors import PlatformError
from experiments import importers, services
from experiments.models import Dataset, DatasetItem

pytestmark = pytest.mark.django_db

GOOD_CSV = 'question,expected,metadata\n"What is 2+2?",4,"{""topic"": ""math""}"\nCapital of France?,Paris,\n'
BAD_CSV = (
    "question,expected,metadata,messages\n"
    "ok row,1,,\n"
    'bad meta,2,"{not json",\n'
    "too,many,fields,here,extra\n"
    ',3,"[1]",\n'
    'msgs,4,,"[{""role"": ""wizard"", ""content"": ""hi""}]"\n'
)


def test_csv_import_creates_items_with_variables_expected_and_metadata(user):
    dataset = services.dataset_create(name="math", owner=user)
    assert services.dataset_import(dataset=dataset, fmt="csv", content=GOOD_CSV.encode()) == 2
    first, second = dataset.items.order_by("position")
    assert first.input == {"question": "What is 2+2?"} and first.expected == "4"
    assert first.metadata == {"topic": "math"} and first.position == 1
    assert second.input == {"question": "Capital of France?"} and second.metadata == {}


def test_csv_with_bad_rows_is_rejected_whole_listing_every_row_and_field(user):
    dataset = services.dataset_create(name="math", owner=user)
    with pytest.raises(PlatformError) as info:
        services.dataset_import(dataset=dataset, fmt="csv", content=BAD_CSV)
    error = info.value
    assert error.code == "DATASET_INVALID" and error.status == 422
    rows = [(r["row"], r["field"]) for r in error.details["rows"]]
    assert rows == [(3, "metadata"), (4, "(row)"), (5, "metadata"), (6, "messages")]
    assert "row 3, field metadata" in error.message
    assert dataset.items.count() == 0  # atomic: the good row was not imported either


def test_jsonl_import_flat_and_nested_forms_and_bad_lines(user):
    dataset = services.dataset_create(name="qa", owner=user)
    good = "\n".join(
        [
            json.dumps({"question": "a?", "expected": "A"}),
            "",
            json.dumps({"input": {"q": "b?"}, "expected": {"answer": "B"}, "metadata": {"k": 1}}),
            json.dumps({"messages": [{"role": "user", "content": "hi"}]}),
        ]
    )
    assert services.dataset_import(dataset=dataset, fmt="jsonl", content=good) == 3
    items = list(dataset.items.order_by("position"))
    assert items[0].input == {"question": "a?"} and items[0].expected == "A"
    assert items[1].input == {"q": "b?"} and items[1].expected == {"answer": "B"}
    assert items[2].messages == [{"role": "user", "content": "hi"}] and items[2].input == {}

    bad = "\n".join(
        [
            json.dumps({"q": "fine"}),
            "{broken",
            "[1, 2]",
            json.dumps({"input": "not an object"}),
            json.dumps({"input": {"q": 1}, "surprise": True}),
            json.dumps({"expected": "only expected"}),
        ]
    )
    with pytest.raises(PlatformError) as info:
        services.dataset_import(dataset=dataset, fmt="jsonl", content=bad)
    rows = [(r["row"], r["field"]) for r in info.value.details["rows"]]
    assert rows == [(2, "(line)"), (3, "(line)"), (4, "input"), (5, "surprise"), (6, "input")]
    assert dataset.items.count() == 3


def test_export_round_trips_through_import(user):
    dataset = services.dataset_create(
        name="rt",
        owner=user,
        items=[
            {"input": {"q": "a, with comma", "n": "1"}, "expected": "x\ny", "metadata": {"m": [1]}},
            {"input": {"q": "b", "n": "2"}, "messages": [{"role": "user", "content": "hello"}], "expected": None},
        ],
    )
    from experiments.selectors import dataset_export

    for fmt in ("csv", "jsonl"):
        copy = services.dataset_create(name=f"rt-{fmt}", owner=user)
        services.dataset_import(dataset=copy, fmt=fmt, content=dataset_export(dataset=dataset, fmt=fmt))
        original = [(i.input, i.messages, i.expected, i.metadata) for i in dataset.items.order_by("position")]
        imported = [(i.input, i.messages, i.expected, i.metadata) for i in copy.items.order_by("position")]
        assert imported == original, fmt


def test_new_version_copies_items_and_names_are_unique_per_owner(user, other_user):
    dataset = services.dataset_create(name="v", owner=user, items=[{"input": {"q": "1"}}])
    v2 = services.dataset_new_version(dataset=dataset)
    assert (v2.name, v2.version, v2.items.count(), v2.owner) == ("v", 2, 1, user)
    with pytest.raises(PlatformError) as info:
        services.dataset_create(name="v", owner=user)
    assert info.value.code == "CONFLICT"
    theirs = services.dataset_create(name="v", owner=other_user)  # another user's "v" is theirs alone
    assert services.dataset_new_version(dataset=theirs).version == 2


def test_api_import_upload_and_bad_rows_envelope(key_client, user):
    response = key_client.post("/api/v1/datasets/", {"name": "api-ds", "description": "d"}, format="json")
    assert response.status_code == 201, response.json()
    dataset_id = response.json()["id"]
    upload = SimpleUploadedFile("rows.csv", GOOD_CSV.encode(), content_type="text/csv")
    response = key_client.post(f"/api/v1/datasets/{dataset_id}/import/", {"file": upload}, format="multipart")
    assert response.status_code == 201, response.json()
    assert response.json() == {"imported": 2, "item_count": 2}

    response = key_client.post(
        f"/api/v1/datasets/{dataset_id}/import/", {"format": "csv", "content": BAD_CSV}, format="json"
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "DATASET_INVALID"
    assert error["details"]["rows"][0] == {
        "row": 3,
        "field": "metadata",
        "message": error["details"]["rows"][0]["message"],
    }
    assert DatasetItem.objects.filter(dataset_id=dataset_id).count() == 2

    response = key_client.post(f"/api/v1/datasets/{dataset_id}/import/", {"content": "x"}, format="json")
    assert response.status_code == 422 and response.json()["error"]["details"]["fields"]["format"]

    response = key_client.get(f"/api/v1/datasets/{dataset_id}/export/?file_format=jsonl")
    assert response.status_code == 200
    lines = response.content.decode().splitlines()
    assert json.loads(lines[0])["input"] == {"question": "What is 2+2?"}

    response = key_client.get(f"/api/v1/datasets/{dataset_id}/items/")
    assert response.json()["count"] == 2


def test_api_add_items_validation_and_other_users_cannot_see(key_client, user, other_user):
    dataset = services.dataset_create(name="mine", owner=user)
    response = key_client.post(
        f"/api/v1/datasets/{dataset.id}/items/", {"items": [{"input": {"q": "x"}}, {"bogus": 1}]}, format="json"
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"]["rows"][0]["field"] == "bogus"
    assert dataset.items.count() == 0
    theirs = services.dataset_create(name="theirs", owner=other_user)
    response = key_client.get(f"/api/v1/datasets/{theirs.id}/")
    assert response.status_code == 404 and response.json()["error"]["code"] == "DATASET_NOT_FOUND"
    assert [d["name"] for d in key_client.get("/api/v1/datasets/").json()["results"]] == ["mine"]


def test_items_from_spans_given_directly_and_unknown_span(key_client, user):
    dataset = services.dataset_create(name="from-traces", owner=user)
    response = key_client.post(
        f"/api/v1/datasets/{dataset.id}/from-traces/",
        {
            "spans": [
                {"input": [{"role": "user", "content": "What's up?"}], "output": {"content": "All good."}},
                {"input": {"city": "Oslo"}, "output": "Cold."},
            ]
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    first, second = dataset.items.order_by("position")
    assert first.messages == [{"role": "user", "content": "What's up?"}] and first.expected == "All good."
    assert second.input == {"city": "Oslo"} and second.expected == "Cold."
    response = key_client.post(
        f"/api/v1/datasets/{dataset.id}/from-traces/",
        {"spans": [{"trace_id": "a" * 32, "span_id": "b" * 16}]},
        format="json",
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"]["rows"][0]["field"] == "span_id"


def test_items_from_a_recorded_span_through_the_traces_app(user):
    from django.utils import timezone

    traces_models = pytest.importorskip("traces.models")
    now = timezone.now()
    traces_models.Trace.objects.create(trace_id="c" * 32, name="t", start_time=now, user_id=user.id)
    traces_models.Span.objects.create(
        trace_id="c" * 32,
        span_id="d" * 16,
        name="llm",
        kind="llm",
        start_time=now,
        end_time=now,
        input=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
        output="4",
    )
    dataset = services.dataset_create(name="spans", owner=user)
    (item,) = services.dataset_items_from_spans(
        dataset=dataset, spans=[{"trace_id": "c" * 32, "span_id": "d" * 16}], user=user
    )
    assert item.messages[-1] == {"role": "user", "content": "2+2?"}
    assert item.expected == "4" and item.source_span_id == "d" * 16


def test_importer_edge_cases():
    assert importers.parse_csv("").errors[0].field == "(header)"
    assert importers.parse_csv("a,a\n1,2\n").errors[0].message == "the column appears twice"
    parsed = importers.parse_csv("\ufeffq,expected\n\n1,2\n")  # BOM and blank lines
    assert parsed.items == [{"input": {"q": "1"}, "messages": None, "expected": "2", "metadata": {}}]
    assert Dataset.objects.count() == 0


def test_delete_a_dataset_unless_an_experiment_uses_it(key_client, user):
    unused = services.dataset_create(name="unused", owner=user, items=[{"input": {"q": "1"}}])
    used = services.dataset_create(name="used", owner=user, items=[{"input": {"q": "1"}}])
    services.experiment_create(name="e", dataset=used, variants=[{"name": "a", "endpoint": "mock/x"}], owner=user)
    assert key_client.delete(f"/api/v1/datasets/{unused.id}/").status_code == 204
    response = key_client.delete(f"/api/v1/datasets/{used.id}/")
    assert response.status_code == 409 and response.json()["error"]["code"] == "CONFLICT"
    assert Dataset.objects.filter(pk=used.pk).exists() and not Dataset.objects.filter(pk=unused.pk).exists()
