from django.urls import path

from experiments.api import datasets, experiments, live, scores

urlpatterns = [
    path("datasets/", datasets.DatasetListView.as_view(), name="dataset-list"),
    path("datasets/<int:dataset_id>/", datasets.DatasetDetailView.as_view(), name="dataset-detail"),
    path("datasets/<int:dataset_id>/items/", datasets.DatasetItemsView.as_view(), name="dataset-items"),
    path("datasets/<int:dataset_id>/import/", datasets.DatasetImportView.as_view(), name="dataset-import"),
    path("datasets/<int:dataset_id>/export/", datasets.DatasetExportView.as_view(), name="dataset-export"),
    path(
        "datasets/<int:dataset_id>/from-traces/", datasets.DatasetFromTracesView.as_view(), name="dataset-from-traces"
    ),
    path("datasets/<int:dataset_id>/versions/", datasets.DatasetVersionView.as_view(), name="dataset-versions"),
    path("experiments/", experiments.ExperimentListView.as_view(), name="experiment-list"),
    path("experiments/live/", live.LiveReportView.as_view(), name="experiment-live-report"),
    path("experiments/<int:experiment_id>/", experiments.ExperimentDetailView.as_view(), name="experiment-detail"),
    path("experiments/<int:experiment_id>/start/", experiments.ExperimentStartView.as_view(), name="experiment-start"),
    path(
        "experiments/<int:experiment_id>/cancel/", experiments.ExperimentCancelView.as_view(), name="experiment-cancel"
    ),
    path(
        "experiments/<int:experiment_id>/results/",
        experiments.ExperimentResultsView.as_view(),
        name="experiment-results",
    ),
    path(
        "experiments/<int:experiment_id>/results/<int:result_id>/scores/",
        scores.ResultScoresView.as_view(),
        name="experiment-result-scores",
    ),
    path(
        "experiments/<int:experiment_id>/report/", experiments.ExperimentReportView.as_view(), name="experiment-report"
    ),
    path(
        "experiments/<int:experiment_id>/report/csv/",
        experiments.ExperimentReportCsvView.as_view(),
        name="experiment-report-csv",
    ),
    path("evaluators/", scores.EvaluatorListView.as_view(), name="evaluator-list"),
    path("scores/", scores.HumanScoreListView.as_view(), name="human-score-list"),
]
