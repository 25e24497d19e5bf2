from django.urls import path

from experiments import api

urlpatterns = [
    path("datasets/", api.DatasetListView.as_view(), name="dataset-list"),
    path("datasets/<int:dataset_id>/", api.DatasetDetailView.as_view(), name="dataset-detail"),
    path("datasets/<int:dataset_id>/items/", api.DatasetItemsView.as_view(), name="dataset-items"),
    path("datasets/<int:dataset_id>/import/", api.DatasetImportView.as_view(), name="dataset-import"),
    path("datasets/<int:dataset_id>/export/", api.DatasetExportView.as_view(), name="dataset-export"),
    path("datasets/<int:dataset_id>/from-traces/", api.DatasetFromTracesView.as_view(), name="dataset-from-traces"),
    path("datasets/<int:dataset_id>/versions/", api.DatasetVersionView.as_view(), name="dataset-versions"),
    path("experiments/", api.ExperimentListView.as_view(), name="experiment-list"),
    path("experiments/live/", api.LiveReportView.as_view(), name="experiment-live-report"),
    path("experiments/<int:experiment_id>/", api.ExperimentDetailView.as_view(), name="experiment-detail"),
    path("experiments/<int:experiment_id>/start/", api.ExperimentStartView.as_view(), name="experiment-start"),
    path("experiments/<int:experiment_id>/cancel/", api.ExperimentCancelView.as_view(), name="experiment-cancel"),
    path("experiments/<int:experiment_id>/results/", api.ExperimentResultsView.as_view(), name="experiment-results"),
    path(
        "experiments/<int:experiment_id>/results/<int:result_id>/scores/",
        api.ResultScoresView.as_view(),
        name="experiment-result-scores",
    ),
    path("experiments/<int:experiment_id>/report/", api.ExperimentReportView.as_view(), name="experiment-report"),
    path(
        "experiments/<int:experiment_id>/report/csv/",
        api.ExperimentReportCsvView.as_view(),
        name="experiment-report-csv",
    ),
    path("evaluators/", api.EvaluatorListView.as_view(), name="evaluator-list"),
    path("scores/", api.HumanScoreListView.as_view(), name="human-score-list"),
]
