from agents.tools import Tool


class Echo(Tool):
    """A tool a site might add through settings.AGENT_TOOLS."""

    name = "echo"
    description = "Returns its input."
    parameters = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}

    async def run(self, arguments, context):
        return arguments["text"]
