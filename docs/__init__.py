"""The project's documentation beyond README.md, and docs.render, which keeps its figures in step with the results files."""
