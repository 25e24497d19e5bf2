"""Security helpers: credential encryption (`crypto`), provider key sources (`credentials`), the PII filter (`pii`)."""
