from django.conf import settings
from django.contrib.admin import AdminSite
from django.contrib.admin.forms import AdminAuthenticationForm
from django_otp.admin import OTPAdminAuthenticationForm, OTPAdminSite


class PlatformAdminSite(OTPAdminSite):
    """The admin. With `ADMIN_REQUIRE_OTP` (on in production) every login needs a verified OTP device."""

    site_header = "Agent Platform"
    site_title = "Agent Platform admin"
    index_title = "Administration"

    def has_permission(self, request) -> bool:
        if settings.ADMIN_REQUIRE_OTP:
            return OTPAdminSite.has_permission(self, request)
        return AdminSite.has_permission(self, request)

    @property
    def login_form(self):
        return OTPAdminAuthenticationForm if settings.ADMIN_REQUIRE_OTP else AdminAuthenticationForm

    @property
    def login_template(self):
        return "otp/admin111/login.html" if settings.ADMIN_REQUIRE_OTP else None
