"""engine.db (engine/store.py): records survive a reopen, names are unique and reserved
atomically, lookups follow dockerd (full id, name with or without "/", unique prefix)."""

import pytest

from dockyard.engine.state import State
from dockyard.engine.store import Container, Store
from dockyard.errors import Conflict, InvalidArgument, NotFound


def _container(cid: str, name: str, created: str = "2024-01-01T00:00:00Z") -> Container:
    return Container(id=cid, name=name, created=created, image="busybox", image_id="sha256:" + "a" * 64,
                     path="sh", args=["-c", "true"], config={"Image": "busybox", "Labels": {"a": "b"}},
                     host_config={"AutoRemove": False}, state=State(), log_path=f"/x/{cid}-json.log")


@pytest.fixture
def store(tmp_path):
    s = Store(path=str(tmp_path / "engine.db"))
    yield s
    s._db and s._db.close()


def test_add_get_and_reopen(tmp_path, store):
    c = _container("ab" * 32, "web")
    c.state.set_running(42, "2024-01-01T00:00:01Z")
    c.restart_count = 3
    c.manually_stopped = True
    store.add(c)
    store._db.close()
    again = Store(path=str(tmp_path / "engine.db"))
    got = again.get("web")
    assert got.id == c.id and got.args == ["-c", "true"] and got.config["Labels"] == {"a": "b"}
    assert got.state.running and got.state.pid == 42 and got.restart_count == 3 and got.manually_stopped
    assert got.log_path == c.log_path
    again._db.close()


def test_lookups(store):
    a = _container("abc1" + "0" * 60, "first")
    b = _container("abc2" + "0" * 60, "second")
    store.add(a)
    store.add(b)
    assert store.get(a.id) is a
    assert store.get("/second") is b and store.get("second") is b
    assert store.get("abc1") is a
    with pytest.raises(InvalidArgument, match="multiple IDs found with provided prefix: abc"):
        store.get("abc")
    with pytest.raises(NotFound, match="No such container: nope"):
        store.get("nope")
    with pytest.raises(NotFound):
        store.get("")


def test_name_in_use_is_a_conflict_in_dockers_words(store):
    store.add(_container("1" * 64, "web"))
    with pytest.raises(Conflict) as e:
        store.add(_container("2" * 64, "web"))
    assert str(e.value) == ('Conflict. The container name "/web" is already in use by container "'
                            + "1" * 64 + '". You have to remove (or rename) that container to be '
                            "able to reuse that name.")


def test_reservation_holds_a_name_until_add(store):
    store.reserve("web", "1" * 64)
    with pytest.raises(Conflict):
        store.reserve("web", "2" * 64)
    with pytest.raises(Conflict):
        store.add(_container("2" * 64, "web"))
    store.add(_container("1" * 64, "web"))  # the holder takes it over
    store.reserve("free", "3" * 64)
    store.release("free", "3" * 64)
    assert not store.taken("free")


def test_rename_save_delete(tmp_path, store):
    c = _container("1" * 64, "old")
    store.add(c)
    store.add(_container("2" * 64, "other"))
    with pytest.raises(Conflict):
        store.rename(c, "other")
    store.rename(c, "new")
    assert store.by_name("new") is c and store.find("old") is None
    c.state.set_running(7, "2024-01-01T00:00:01Z")
    c.state.set_stopped(3, "2024-01-01T00:00:02Z")
    store.save(c)
    store.delete(store.get("other"))
    store._db.close()
    again = Store(path=str(tmp_path / "engine.db"))
    assert [x.name for x in again.list()] == ["new"]
    assert again.get("new").state.exit_code == 3 and again.get("new").state.status == "exited"
    again._db.close()


def test_list_is_newest_first(store):
    store.add(_container("1" * 64, "a", "2024-01-01T00:00:00Z"))
    store.add(_container("2" * 64, "b", "2024-01-02T00:00:00Z"))
    assert [c.name for c in store.list()] == ["b", "a"]
