"""The container's json-file log on disk, rotated as dockerd's json-file driver rotates it
(`max-size`, `max-file`): when the file reaches max-size after an entry, `log.(N-2)` becomes
`log.(N-1)`, …, `log` becomes `log.1`, and a new `log` starts; with max-file 1 the file is
truncated instead. Writes are plain blocking writes to a regular file: they never wait for a
reader, so a slow or absent client cannot stall the container."""

import os


class LogFile:
    def __init__(self, path: str, max_size: int = -1, max_file: int = 1):
        self.path, self.max_size, self.max_file = path, max_size, max(1, max_file)
        self._fd = self._open()
        self.size = os.fstat(self._fd).st_size

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)

    def write(self, entries: list[bytes]) -> None:
        """Append whole entries, rotating after the one that reaches max-size (as dockerd
        checks entry by entry); the entries between rotations go out in one write."""
        batch, batch_size = [], 0
        for entry in entries:
            batch.append(entry)
            batch_size += len(entry)
            if 0 < self.max_size <= self.size + batch_size:
                self._append(b"".join(batch), batch_size)
                batch, batch_size = [], 0
                self.rotate()
        if batch:
            self._append(b"".join(batch), batch_size)

    def _append(self, data: bytes, size: int) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        self.size += size

    def rotate(self) -> None:
        if self.max_file < 2:
            os.ftruncate(self._fd, 0)
            self.size = 0
            return
        for n in range(self.max_file - 1, 1, -1):
            try:
                os.rename(f"{self.path}.{n - 1}", f"{self.path}.{n}")
            except FileNotFoundError:
                pass
        os.rename(self.path, self.path + ".1")
        os.close(self._fd)
        self._fd = self._open()
        self.size = 0

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
