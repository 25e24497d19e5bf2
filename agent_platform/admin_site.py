from django.contrib.admin import AdminSite
from django.contrib.admin.forms import AdminAuthenticationForm
from django_otp.admin import OTPAdminAuthenticationForm, OTPAdminSite

from agent_platform.accounts.selectors import user_needs_otp


class PlatformAdminLoginForm(OTPAdminAuthenticationForm):
    """Password, then a one-time password for whoever needs one (`user_needs_otp`): a user with a confirmed
    device, or any staff user with ADMIN_REQUIRE_OTP. Others log in with the password alone."""

    def clean(self):
        self.cleaned_data = AdminAuthenticationForm.clean(self)
        user = self.get_user()
        if user_needs_otp(user=user):
            self.clean_otp(user)
        return self.cleaned_data


class PlatformAdminSite(OTPAdminSite):
    """The admin. A user who needs a one-time password (see `user_needs_otp`; every staff user with
    `ADMIN_REQUIRE_OTP`, on in production) is let in only by an OTP-verified session."""

    site_header = "Agent Platform"
    site_title = "Agent Platform admin"
    index_title = "Administration"
    login_form = PlatformAdminLoginForm
    login_template = "otp/admin111/login.html"

    def has_permission(self, request) -> bool:
        if not AdminSite.has_permission(self, request):
            return False
        is_verified = getattr(request.user, "is_verified", None)
        return bool(is_verified and is_verified()) or not user_needs_otp(user=request.user)
