from django.urls import path

from traces import views

urlpatterns = [
    path("dashboard/traces/", views.trace_list, name="dashboard-traces"),
    path("dashboard/traces/<str:trace_id>/", views.trace_detail, name="dashboard-trace-detail"),
]
