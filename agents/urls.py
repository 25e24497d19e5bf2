from django.urls import path

from agents import api

urlpatterns = [
    path("agents/", api.AgentListView.as_view(), name="agent-list"),
    path("agents/<slug:slug>/", api.AgentDetailView.as_view(), name="agent-detail"),
    path("agents/<slug:slug>/health/", api.AgentHealthView.as_view(), name="agent-health"),
    path("agents/<slug:slug>/runs/", api.AgentRunsView.as_view(), name="agent-runs"),
    path("runs/<str:run_id>/", api.RunDetailView.as_view(), name="run-detail"),
    path("runs/<str:run_id>/cancel/", api.RunCancelView.as_view(), name="run-cancel"),
    path("runs/<str:run_id>/events/", api.RunEventsView.as_view(), name="run-events"),
    path(
        "conversations/<str:conversation_id>/messages/",
        api.ConversationMessagesView.as_view(),
        name="conversation-messages",
    ),
    path("conversations/<str:conversation_id>/clear/", api.ConversationClearView.as_view(), name="conversation-clear"),
    path("tools/", api.ToolListView.as_view(), name="tool-list"),
]
