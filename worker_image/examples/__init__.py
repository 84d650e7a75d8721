"""Example job types served by the worker image: `python -m callback_wrapper --job examples.<module>:run`."""
