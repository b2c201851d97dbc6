"""Dockyard: a container engine that re-implements the Docker Engine stack in Python.

Rooms (see DESIGN.md): linux (syscalls), oci (spec models), runtime (dockyard-runc),
shim, containerd, images, engine (dockyardd), network, volume, build, cli, api.
"""

__version__ = "0.1.0"
