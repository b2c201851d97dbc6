"""`python -m dockyard.ctr`: the same as the dockyard-ctr script."""

from . import main

main()
