"""Celery tasks, the scheduler process and Slack delivery of the outbox."""
