"""One module per dockyard-runc verb (configure(parser), run(args))."""
