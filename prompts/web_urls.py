from django.urls import path

from prompts import views

urlpatterns = [
    path("dashboard/prompts/", views.prompt_list, name="dashboard-prompts"),
    path("dashboard/prompts/<str:name>/", views.prompt_detail, name="dashboard-prompt-detail"),
]
