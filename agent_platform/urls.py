from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from agent_platform.api import views as api_views
from agent_platform.api.views import api_not_found
from agent_platform.observability import health
from agent_platform.observability.metrics import metrics_view

handler500 = "agent_platform.api.views.server_error"

api_v1 = [
    path("auth/keys/", api_views.ApiKeyListView.as_view(), name="api-keys"),
    path("auth/keys/<int:key_id>/", api_views.ApiKeyDetailView.as_view(), name="api-key-detail"),
    path("auth/token/", api_views.TokenObtainView.as_view(), name="token-obtain"),
    path("auth/token/refresh/", api_views.TokenRefreshView.as_view(), name="token-refresh"),
    path("auth/token/revoke/", api_views.TokenRevokeView.as_view(), name="token-revoke"),
    path("", include("agent_platform.llm.urls")),
    path("", include("traces.urls")),
    path("", include("costs.urls")),
    path("", include("prompts.urls")),
    path("", include("agents.urls")),
    path("", include("experiments.urls")),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    re_path(r"^api/", api_not_found),
    path("health/", health.liveness, name="health"),
    path("health/ready/", health.readiness, name="health-ready"),
    path("metrics", metrics_view, name="prometheus-django-metrics"),
    path("", include("costs.web_urls")),
    path("", include("traces.web_urls")),
    path("", include("prompts.web_urls")),
    path("", include("agents.web_urls")),
    path("", include("experiments.web_urls")),
]
