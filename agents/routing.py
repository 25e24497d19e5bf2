from django.urls import path

from agents.consumers import ChatConsumer

websocket_urlpatterns = [path("ws/chat/<slug:agent_slug>/", ChatConsumer.as_asgi())]
