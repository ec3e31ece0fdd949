"""What each CLI command does, given parsed arguments and an App; the parser lives in cli.py."""
