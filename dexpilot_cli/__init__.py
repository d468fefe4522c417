"""The `dexpilot` console command: the operator's entry point to the Prefect project.

It lives beside the core package rather than inside it because some commands (settings push,
state control) talk to Prefect, and the core stays free of Prefect imports.
"""
