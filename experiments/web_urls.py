from django.urls import path

from experiments import views

urlpatterns = [
    path("dashboard/experiments/", views.experiment_list, name="experiments-list"),
    path("dashboard/experiments/live/", views.live_ab, name="experiments-live"),
    path("dashboard/experiments/scores/", views.trace_score, name="experiments-trace-score"),
    path("dashboard/experiments/datasets/<int:dataset_id>/", views.dataset_detail, name="experiments-dataset"),
    path("dashboard/experiments/<int:experiment_id>/", views.experiment_detail, name="experiments-detail"),
    path(
        "dashboard/experiments/<int:experiment_id>/<str:action>/",
        views.experiment_action,
        name="experiments-action",
    ),
    path(
        "dashboard/experiments/<int:experiment_id>/results/<int:result_id>/score/",
        views.result_score,
        name="experiments-result-score",
    ),
]
