"""The Keras parts every model shares: the ModelFamily interface, fitting, augmentation, the lookup by
name and loading, byte-stable saving, and predicting image files with a saved model."""
