from django.urls import path, re_path

from agent_platform.llm import api

urlpatterns = [
    path("models/", api.ModelListView.as_view(), name="llm-models"),
    re_path(
        r"^models/(?P<name>[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127})/$", api.ModelDetailView.as_view(), name="llm-model"
    ),
]
