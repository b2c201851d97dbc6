"""Images: what it takes to move an OCI image between a registry, an archive and a rootfs.

This room holds the distribution client (reference grammar, auth challenges, credentials,
registry HTTP), layer handling (decompression, applying a layer tar into a snapshot directory
with whiteouts, diffing an upperdir back into a layer) and `docker save`/`load` archives.
It is pure of containerd: nothing here knows about content stores, snapshotters or leases —
`dockyard.containerd.transfer` composes these parts with them."""
