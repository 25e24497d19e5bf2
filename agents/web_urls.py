from django.urls import path

from agents import views

urlpatterns = [
    path("dashboard/agents/", views.agent_list, name="agents-list"),
    path("chat/<slug:agent_slug>/", views.chat, name="agents-chat"),
]
