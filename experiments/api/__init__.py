"""REST API of the experiments app, one module per concern; `experiments.urls` routes to them.
Views validate input and call services/selectors."""
