"""Rails are plain adapters (see rails/__init__.py); this app holds no tables yet."""
