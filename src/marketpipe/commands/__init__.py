"""The CLI's commands, a module per family; ``marketpipe.cli`` parses and dispatches."""
