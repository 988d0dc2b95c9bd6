"""`python -m wulian.cli`."""

from wulian.cli import main

main()
