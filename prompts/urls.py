from django.urls import path

from prompts.api import labels, reviews, transfer, views

urlpatterns = [
    path("prompts/", views.PromptListView.as_view(), name="prompt-list"),
    path("prompts/export/", transfer.PromptExportView.as_view(), name="prompt-export"),
    path("prompts/import/", transfer.PromptImportView.as_view(), name="prompt-import"),
    path("prompts/<str:name>/", views.PromptDetailView.as_view(), name="prompt-detail"),
    path("prompts/<str:name>/versions/", views.PromptVersionsView.as_view(), name="prompt-versions"),
    path("prompts/<str:name>/versions/<int:version>/", views.PromptVersionDetailView.as_view(), name="prompt-version"),
    path("prompts/<str:name>/at/", views.PromptAtView.as_view(), name="prompt-at"),
    path("prompts/<str:name>/render/", views.PromptRenderView.as_view(), name="prompt-render"),
    path("prompts/<str:name>/diff/", views.PromptDiffView.as_view(), name="prompt-diff"),
    path("prompts/<str:name>/rollback/", views.PromptRollbackView.as_view(), name="prompt-rollback"),
    path("prompts/<str:name>/labels/", labels.PromptLabelsView.as_view(), name="prompt-labels"),
    path("prompts/<str:name>/labels/<str:label>/", labels.PromptLabelDetailView.as_view(), name="prompt-label"),
    path("prompts/<str:name>/reviews/", reviews.PromptReviewsView.as_view(), name="prompt-reviews"),
]
