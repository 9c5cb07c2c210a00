"""Pure Block Kit builders: objects in, blocks out. No Slack calls, no database."""
