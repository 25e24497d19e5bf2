"""REST API of the prompt store (`/api/v1/prompts/...`), one module per concern; `prompts.urls` routes to them.
Thin: shape checks here, everything else in services and selectors."""
