"""Drives a server through the Python etcd3gw client (Debian's python3-etcd3gw),
on each API prefix the client can be given: put/get/delete, transactions,
leases (grant, keep-alive, time-to-live, revoke), locks and a watch.

Usage: python3 etcd3gw_check.py PORT. Prints "ok <prefix>" per prefix and
exits 0, or raises (non-zero exit, traceback on stderr).
"""

import sys
import threading

from etcd3gw.client import Etcd3Client

WAIT_SECONDS = 10


def check(port, api_path):
    tag = api_path.strip("/")
    c = Etcd3Client(host="127.0.0.1", port=port, api_path=api_path)

    assert c.put(tag + "/a", "1") is True
    assert c.put(tag + "/b", b"2") is True
    assert c.get(tag + "/a") == [b"1"], c.get(tag + "/a")
    assert c.get(tag + "/missing") == []
    values = [v for v, _ in c.get_prefix(tag + "/")]
    assert values == [b"1", b"2"], values
    meta = c.get(tag + "/a", metadata=True)[0][1]
    assert meta["key"] == (tag + "/a").encode() and meta["version"] == "1", meta

    assert c.create(tag + "/a", "x") is False
    assert c.create(tag + "/c", "3") is True
    assert c.replace(tag + "/c", "3", "4") is True
    assert c.replace(tag + "/c", "3", "5") is False
    assert c.get(tag + "/c") == [b"4"]

    assert c.delete(tag + "/b") is True
    assert c.get(tag + "/b") == []
    assert c.delete_prefix(tag + "/") is True
    assert c.get_prefix(tag + "/") == []

    lease = c.lease(ttl=60)
    assert lease.id > 0
    assert c.put(tag + "/leased", "v", lease=lease) is True
    assert 0 < lease.ttl() <= 60
    assert lease.refresh() == 60
    assert lease.keys() == [(tag + "/leased").encode()], lease.keys()
    assert lease.revoke() is True
    assert c.get(tag + "/leased") == []
    assert lease.ttl() == -1

    lock = c.lock(tag + "-lock", ttl=60)
    assert lock.acquire() is True
    assert lock.is_acquired()
    other = c.lock(tag + "-lock", ttl=60)
    assert other.acquire() is False
    assert lock.release() is True
    assert other.acquire() is True
    assert other.release() is True

    # A watch sees the events of writes made while it is open.
    events, cancel = c.watch_prefix(tag + "/w/")
    seen = []
    done = threading.Event()

    def collect():
        for event in events:
            seen.append(event)
            if len(seen) == 2:
                done.set()
                return

    reader = threading.Thread(target=collect, daemon=True)
    reader.start()
    # The watch is created when its first answer arrived; writes made before
    # that could be missed, so write until the first event shows up.
    for attempt in range(50):
        c.put(tag + "/w/k", "v1")
        if seen or done.wait(0.1):
            break
    c.delete(tag + "/w/k")
    assert done.wait(WAIT_SECONDS), "watch events did not arrive: %r" % seen
    cancel()
    assert seen[0]["kv"]["key"] == (tag + "/w/k").encode(), seen
    assert seen[0]["kv"]["value"] == b"v1", seen
    assert seen[-1].get("type") == "DELETE" or seen[-1]["kv"].get("value") == b"v1", seen

    status = c.status()
    assert status["header"]["member_id"] == status["leader"], status
    assert len(c.members()) == 1
    print("ok", tag)


def main():
    port = int(sys.argv[1])
    for api_path in ("/v3alpha/", "/v3beta/", "/v3/"):
        check(port, api_path)


if __name__ == "__main__":
    main()
