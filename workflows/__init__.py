"""The rules and the records: tables, services and policy. Imports no Slack, Celery, bot or workers."""
