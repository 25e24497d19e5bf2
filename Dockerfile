# The image shared by the web, worker and beat services of docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    HF_HUB_OFFLINE=1

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY . .
RUN DJANGO_ENV=development python manage.py collectstatic --noinput

RUN useradd --system --home /app agent && chown -R agent /app
USER agent

EXPOSE 8000
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "agent_platform.asgi:application"]
