from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "agent_platform.accounts"
    label = "accounts"
    verbose_name = "Accounts and API keys"
