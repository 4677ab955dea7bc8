"""The command line: the only layer that reads files and the environment, prints and exits."""
