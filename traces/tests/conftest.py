from tests.support.sinks import _fresh_sinks, _mock_price  # noqa: F401 - shared fixtures of the two sinks
