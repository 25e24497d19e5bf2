from django.urls import path

from costs import views

urlpatterns = [
    path("", views.overview, name="overview"),
    path("dashboard/usage/", views.usage, name="dashboard-usage"),
]
