"""dockyard-runc: a runc-compatible OCI runtime. `cli.py` parses runc's command line and hands
each verb to a module of its own; namespaces, rootfs, cgroups, capabilities and seccomp each live
in their own module and use `dockyard.linux` for every syscall."""
