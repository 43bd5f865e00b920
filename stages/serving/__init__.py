"""The page to try the trained models on your own photos (stages/serve.py): what it shows for a photo, and its web server."""
