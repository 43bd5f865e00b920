"""Numbers, figures and words: the metrics and tests, the figures, heat maps of where a model looks, and
the report's document model and generated discussion."""
