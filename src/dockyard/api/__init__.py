"""The gRPC API of dockyard-containerd: `.proto` sources and the modules protoc generates from them.

Layout, modelled on containerd's `api/`:
- `types/` — messages shared by several services (`Descriptor`, `Mount`), package `dockyard.types`;
- `events/` — the payloads carried in an event `Envelope` (task, container, image), package
  `dockyard.events`;
- `services/<name>/v1/` — one service per file, package `dockyard.services.<name>.v1`.

The `*_pb2*.py(i)` files are generated and committed: edit a `.proto`, then run `make proto`.
Nothing here is written by hand except the `.proto` files and this docstring. The namespace of a
call travels as gRPC metadata `containerd-namespace`, as with containerd, not in the messages.
"""
