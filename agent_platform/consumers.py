from channels.generic.websocket import AsyncJsonWebsocketConsumer


class PingConsumer(AsyncJsonWebsocketConsumer):
    """Liveness of the websocket path: echoes what it receives, answers "ping" with "pong"."""

    async def receive_json(self, content, **kwargs):
        if content == "ping" or (isinstance(content, dict) and content.get("type") == "ping"):
            await self.send_json({"type": "pong"})
        else:
            await self.send_json({"type": "echo", "data": content})
