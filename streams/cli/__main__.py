"""`python -m streams.cli` runs the `pingan` CLI."""
from streams.cli import main

main()
