"""The models: one module per model, stages/models/<name>.py for each train.<name> in params.yaml.

Each defines `Params` (its params section's schema) and `Family` (a stages.modelkit.family.ModelFamily);
stages.modelkit.registry finds them by name. Nothing else lives here.
"""
