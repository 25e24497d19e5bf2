"""Websocket routes of the whole project: the platform's own ping socket plus each app's."""

from django.urls import path

from agent_platform.consumers import PingConsumer
from agents.routing import websocket_urlpatterns as agent_websockets

websocket_urlpatterns = [path("ws/ping/", PingConsumer.as_asgi()), *agent_websockets]
