# The Celery app is imported here so that @shared_task binds to Pier's tenant-aware app
# (its broker, its schema header) and not to Celery's default app.
from .celery import app as celery_app

__all__ = ["celery_app"]
