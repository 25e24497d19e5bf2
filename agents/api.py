"""Agents REST API: catalog and CRUD, runs (start, status, cancel, events), conversations, tools."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from agent_platform.accounts.models import Team
from agent_platform.api.errors import PlatformError
from agent_platform.api.pagination import PagePagination
from agents import selectors, services, validation
from agents.models import AgentDefinition, AgentMode, Message, Run
from agents.rendering import render_markdown
from agents.tools.registry import registry as tool_registry

# --- serializers -----------------------------------------------------------------------------------------------


class AgentWriteSerializer(serializers.ModelSerializer):
    """Fields a client (or a catalog file) may set. Tools must be registered; limits are bounded."""

    mode = serializers.ChoiceField(choices=AgentMode.choices, required=False)
    tools = serializers.ListField(
        child=serializers.CharField(max_length=100), required=False, max_length=validation.MAX_TOOLS
    )
    parameters = serializers.DictField(required=False)
    memory = serializers.DictField(required=False)
    team = serializers.PrimaryKeyRelatedField(queryset=Team.objects.all(), required=False, allow_null=True)

    class Meta:
        model = AgentDefinition
        fields = [*services.AGENT_FIELDS, "team"]
        extra_kwargs = {"model_endpoint": {"required": False, "allow_blank": True}}

    # the rules are agents.validation's, shared with the services and the catalog loader
    def validate_tools(self, value: list[str]) -> list[str]:
        return validation.tools_validate(value)

    def validate_model_endpoint(self, value: str) -> str:
        return validation.model_endpoint_validate(value)

    def validate_memory(self, value: dict) -> dict:
        return validation.memory_validate(value)

    def validate(self, attrs: dict) -> dict:
        validation.endpoint_or_prompt_validate(
            model_endpoint=attrs.get("model_endpoint", getattr(self.instance, "model_endpoint", "")),
            system_prompt_name=attrs.get("system_prompt_name", getattr(self.instance, "system_prompt_name", "")),
        )
        return attrs


class AgentSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.get_username", read_only=True, default=None)
    chat_url = serializers.SerializerMethodField()

    class Meta:
        model = AgentDefinition
        fields = ["id", *services.AGENT_FIELDS, "team", "owner", "created_at", "updated_at", "chat_url"]
        read_only_fields = fields

    def get_chat_url(self, obj: AgentDefinition) -> str:
        return f"/chat/{obj.slug}/"


class AgentSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = AgentDefinition
        fields = ["id", "slug", "name", "description", "category", "model_endpoint", "tools", "mode", "enabled"]
        read_only_fields = fields


class RunStartSerializer(serializers.Serializer):
    input = serializers.CharField(max_length=services.MAX_INPUT_CHARS, trim_whitespace=False)
    conversation_id = serializers.UUIDField(required=False, allow_null=True)
    wait = serializers.BooleanField(default=False)
    wait_seconds = serializers.FloatField(required=False, min_value=0.1, max_value=600)


class RunErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class RunSerializer(serializers.ModelSerializer):
    agent = serializers.CharField(source="agent.slug", read_only=True)
    error = serializers.SerializerMethodField()
    output_html = serializers.SerializerMethodField()
    total_tokens = serializers.IntegerField(read_only=True)
    duration_ms = serializers.FloatField(read_only=True, allow_null=True)
    trace_url = serializers.SerializerMethodField()

    class Meta:
        model = Run
        fields = [
            "id", "agent", "conversation", "status", "input", "output", "output_html", "error", "created_at",
            "started_at", "finished_at", "duration_ms", "input_tokens", "output_tokens", "total_tokens", "llm_calls",
            "cost", "trace_id", "trace_url", "attempts", "prompt_name", "prompt_version",
        ]  # fmt: skip
        read_only_fields = fields

    @extend_schema_field(RunErrorSerializer(allow_null=True))
    def get_error(self, obj: Run) -> dict | None:
        return {"code": obj.error_code, "message": obj.error_message} if obj.error_code else None

    def get_output_html(self, obj: Run) -> str:
        return render_markdown(obj.output)

    def get_trace_url(self, obj: Run) -> str | None:
        return f"/dashboard/traces/{obj.trace_id}/" if obj.trace_id else None


class RunEventSerializer(serializers.Serializer):
    run_id = serializers.UUIDField()
    seq = serializers.IntegerField()
    type = serializers.CharField()
    data = serializers.DictField()  # type: ignore[assignment]  # DRF's metaclass moves fields off the class


class RunEventListSerializer(serializers.Serializer):
    run_id = serializers.UUIDField()
    status = serializers.CharField()
    events = RunEventSerializer(many=True)


class MessageSerializer(serializers.ModelSerializer):
    html = serializers.SerializerMethodField()
    run_id = serializers.UUIDField(read_only=True, allow_null=True)

    class Meta:
        model = Message
        fields = ["id", "role", "content", "html", "tool_calls", "tool_call_id", "name", "run_id", "created_at"]
        read_only_fields = fields

    def get_html(self, obj: Message) -> str:
        return render_markdown(obj.content) if obj.role == Message.Role.ASSISTANT else ""


class ClearedSerializer(serializers.Serializer):
    conversation_id = serializers.UUIDField()
    deleted = serializers.IntegerField()


class ToolSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField()
    parameters = serializers.DictField()


class HealthSerializer(serializers.Serializer):
    agent = serializers.CharField()
    endpoint = serializers.CharField()
    enabled = serializers.BooleanField()
    healthy = serializers.BooleanField()
    model = serializers.CharField(required=False)
    provider = serializers.CharField(required=False)
    latency_ms = serializers.FloatField(required=False)
    error = RunErrorSerializer(required=False)


# --- views -------------------------------------------------------------------------------------------------------


def _api_key_id(request) -> int | None:
    auth = getattr(request, "auth", None)
    return getattr(auth, "pk", None) if auth is not None and hasattr(auth, "key_hash") else None


def _editable(request, agent: AgentDefinition) -> AgentDefinition:
    if not selectors.agent_can_edit(request.user, agent):
        raise PlatformError(f"You may not change agent {agent.slug!r}.", code="POLICY_DENIED")
    return agent


class AgentListView(APIView):
    pagination_class = PagePagination

    @extend_schema(
        parameters=[
            OpenApiParameter("category", str, description="Only agents of this category."),
            OpenApiParameter("search", str, description="Text in slug, name or description."),
            OpenApiParameter("page", int),
            OpenApiParameter("page_size", int),
        ],
        responses=AgentSummarySerializer(many=True),
    )
    def get(self, request):
        qs = selectors.agent_catalog(
            user=request.user, category=request.query_params.get("category"), search=request.query_params.get("search")
        )
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(AgentSummarySerializer(page, many=True).data)

    @extend_schema(request=AgentWriteSerializer, responses={201: AgentSerializer})
    def post(self, request):
        serializer = AgentWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        agent = services.agent_create(data=data, owner=request.user, team=data.pop("team", None))
        return Response(AgentSerializer(agent).data, status=status.HTTP_201_CREATED)


class AgentDetailView(APIView):
    @extend_schema(responses=AgentSerializer)
    def get(self, request, slug: str):
        return Response(AgentSerializer(selectors.agent_get(slug=slug, user=request.user)).data)

    def _update(self, request, slug: str, partial: bool):
        agent = _editable(request, selectors.agent_get(slug=slug, user=request.user))
        serializer = AgentWriteSerializer(instance=agent, data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        agent = services.agent_update(agent=agent, data=dict(serializer.validated_data), user=request.user)
        return Response(AgentSerializer(agent).data)

    @extend_schema(request=AgentWriteSerializer, responses=AgentSerializer)
    def put(self, request, slug: str):
        return self._update(request, slug, partial=False)

    @extend_schema(request=AgentWriteSerializer, responses=AgentSerializer)
    def patch(self, request, slug: str):
        return self._update(request, slug, partial=True)

    @extend_schema(responses={204: None})
    def delete(self, request, slug: str):
        services.agent_delete(agent=_editable(request, selectors.agent_get(slug=slug, user=request.user)))
        return Response(status=status.HTTP_204_NO_CONTENT)


class AgentHealthView(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("probe", bool, description="Send a 1-token request (default true).")],
        responses=HealthSerializer,
    )
    def get(self, request, slug: str):
        agent = selectors.agent_get(slug=slug, user=request.user)
        probe = request.query_params.get("probe", "true").lower() not in ("0", "false", "no")
        return Response(services.agent_health(agent=agent, probe=probe))


class AgentRunsView(APIView):
    pagination_class = PagePagination

    @extend_schema(responses=RunSerializer(many=True))
    def get(self, request, slug: str):
        agent = selectors.agent_get(slug=slug, user=request.user)
        qs = Run.objects.filter(agent=agent).select_related("agent")
        if not request.user.is_staff:
            qs = qs.filter(user=request.user)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(qs.order_by("-created_at"), request, view=self)
        return paginator.get_paginated_response(RunSerializer(page, many=True).data)

    @extend_schema(
        request=RunStartSerializer,
        responses={200: RunSerializer, 202: RunSerializer},
        description='Start a run: 202 with the run (status queued or running). With "wait": true, blocks until the '
        "run finishes (200) or `wait_seconds` pass (202).",
    )
    def post(self, request, slug: str):
        agent = selectors.agent_get(slug=slug, user=request.user)
        serializer = RunStartSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        conversation = None
        if data.get("conversation_id"):
            conversation = selectors.conversation_get(conversation_id=data["conversation_id"], user=request.user)
        run = services.run_start(
            agent=agent,
            input=data["input"],
            conversation=conversation,
            user=request.user,
            api_key_id=_api_key_id(request),
            wait=data["wait"],
            wait_seconds=data.get("wait_seconds"),
        )
        finished = data["wait"] and run.is_finished
        return Response(RunSerializer(run).data, status=status.HTTP_200_OK if finished else status.HTTP_202_ACCEPTED)


class RunDetailView(APIView):
    @extend_schema(responses=RunSerializer)
    def get(self, request, run_id: str):
        return Response(RunSerializer(selectors.run_get(run_id=run_id, user=request.user)).data)


class RunCancelView(APIView):
    @extend_schema(request=None, responses=RunSerializer)
    def post(self, request, run_id: str):
        run = services.run_cancel(run=selectors.run_get(run_id=run_id, user=request.user))
        return Response(RunSerializer(run).data)


class RunEventsView(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("after", int, description="Only events with a greater sequence number.")],
        responses=RunEventListSerializer,
    )
    def get(self, request, run_id: str):
        run = selectors.run_get(run_id=run_id, user=request.user)
        raw = request.query_params.get("after", "0")
        try:
            after = int(raw)
        except ValueError:
            raise PlatformError("after must be an integer.", code="VALIDATION_ERROR", field="after") from None
        events = selectors.run_events_since(run=run, after_seq=after)
        return Response({"run_id": str(run.id), "status": run.status, "events": events})


class ConversationMessagesView(APIView):
    pagination_class = PagePagination

    @extend_schema(responses=MessageSerializer(many=True))
    def get(self, request, conversation_id: str):
        conversation = selectors.conversation_get(conversation_id=conversation_id, user=request.user)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(
            selectors.conversation_messages(conversation=conversation), request, view=self
        )
        return paginator.get_paginated_response(MessageSerializer(page, many=True).data)


class ConversationClearView(APIView):
    @extend_schema(request=None, responses=ClearedSerializer)
    def post(self, request, conversation_id: str):
        conversation = selectors.conversation_get(conversation_id=conversation_id, user=request.user)
        deleted = services.conversation_clear(conversation=conversation)
        return Response({"conversation_id": str(conversation.id), "deleted": deleted})


class ToolListView(APIView):
    @extend_schema(responses=ToolSerializer(many=True))
    def get(self, request):
        return Response(
            [{"name": t.name, "description": t.description, "parameters": t.parameters} for t in tool_registry.list()]
        )
