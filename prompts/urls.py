from django.urls import path

from prompts import api

urlpatterns = [
    path("prompts/", api.PromptListView.as_view(), name="prompt-list"),
    path("prompts/export/", api.PromptExportView.as_view(), name="prompt-export"),
    path("prompts/import/", api.PromptImportView.as_view(), name="prompt-import"),
    path("prompts/<str:name>/", api.PromptDetailView.as_view(), name="prompt-detail"),
    path("prompts/<str:name>/versions/", api.PromptVersionsView.as_view(), name="prompt-versions"),
    path("prompts/<str:name>/versions/<int:version>/", api.PromptVersionDetailView.as_view(), name="prompt-version"),
    path("prompts/<str:name>/at/", api.PromptAtView.as_view(), name="prompt-at"),
    path("prompts/<str:name>/render/", api.PromptRenderView.as_view(), name="prompt-render"),
    path("prompts/<str:name>/diff/", api.PromptDiffView.as_view(), name="prompt-diff"),
    path("prompts/<str:name>/rollback/", api.PromptRollbackView.as_view(), name="prompt-rollback"),
    path("prompts/<str:name>/labels/", api.PromptLabelsView.as_view(), name="prompt-labels"),
    path("prompts/<str:name>/labels/<str:label>/", api.PromptLabelDetailView.as_view(), name="prompt-label"),
    path("prompts/<str:name>/reviews/", api.PromptReviewsView.as_view(), name="prompt-reviews"),
]
