from django.urls import path

from costs import api

urlpatterns = [
    path("usage/", api.UsageView.as_view(), name="usage"),
    path("prices/", api.PriceListView.as_view(), name="price-list"),
    path("budgets/", api.BudgetListView.as_view(), name="budget-list"),
    path("budgets/<int:pk>/", api.BudgetDetailView.as_view(), name="budget-detail"),
    path("costs/recompute/", api.RecomputeView.as_view(), name="cost-recompute"),
]
