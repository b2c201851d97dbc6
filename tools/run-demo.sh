#!/usr/bin/env bash
# `make run`: the main job on this machine, end to end. Starts dockyardd (which starts its own
# dockyard-containerd) on a private socket under build/run, loads the bundled busybox image,
# runs a container from it with the real docker CLI, then stops both daemons.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="$PWD/build/run"
sock="$dir/dockyard.sock"
export DOCKER_HOST="unix://$sock"
unset DOCKER_CONTEXT DOCKER_CONFIG DOCKER_TLS_VERIFY DOCKER_CERT_PATH
mkdir -p "$dir"

stop() {
    # dockyardd leaves dockyard-containerd (and containers) running by design; the demo ends both.
    for pidfile in "$dir/dockyardd.pid" "$dir/exec/containerd/dockyard-containerd.pid"; do
        if [ -s "$pidfile" ]; then
            pid=$(cat "$pidfile")
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        fi
    done
}
trap stop EXIT

.venv/bin/dockyardd -H "unix://$sock" --data-root "$dir/root" --exec-root "$dir/exec" \
    --pidfile "$dir/dockyardd.pid" --config-file /dev/null >"$dir/dockyardd.log" 2>&1 &
for _ in $(seq 300); do
    docker version >/dev/null 2>&1 && break
    sleep 0.1
done
docker version --format 'dockyardd {{.Server.Version}}, API {{.Server.APIVersion}}'
docker load -i build/fixtures/busybox/busybox.docker.tar
docker run --rm busybox echo "hello from a busybox container run by dockyardd"
