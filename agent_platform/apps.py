from django.contrib.admin.apps import AdminConfig


class PlatformAdminConfig(AdminConfig):
    default_site = "agent_platform.admin_site.PlatformAdminSite"
