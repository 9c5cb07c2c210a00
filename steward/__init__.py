"""The composition root: the `steward` command line wires settings into bot, workers and workflows."""
