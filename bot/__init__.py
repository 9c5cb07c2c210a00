"""The Slack edge: the Bolt app, its listeners, Block Kit builders and form parsing."""
