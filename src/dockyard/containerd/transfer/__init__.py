"""Moving images between a registry and the local stores: pull, unpack, push, tag and remove
(issue 4; containerd `core/transfer`, `core/unpack`, `core/remotes/docker`).

- `stores` — the daemon's local objects an operation needs, in one value;
- `progress` — the events an operation reports, with Docker's status words, so the engine can turn
  them into Docker's pull/push JSON messages;
- `pull` — resolve a reference, fetch and verify manifest, config and layers (in parallel), and
  unpack as the layers arrive; `unpack` — layers into overlay snapshots named by chain ID, reused
  by load and import; `push` — blobs the registry lacks, then manifests, children first;
- `images_ops` — tag and remove (then garbage-collect).

Everything written is held by a lease while an operation runs, and reachable from the image
record (through containerd's `gc.ref` labels) once it is done, so a failure at any point leaves
nothing the garbage collector cannot remove.
"""
