"""OCI data models: runtime spec (config.json, state, features), image spec (manifest, index,
config), media types and digests. Pure: no I/O beyond reading the schemas shipped beside it."""
