"""The keystore file shared by several processes: no lost update, no torn write, mode 600."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rails.crypto.signing import KeyNotFound, Keystore, address_for_key, new_private_key

ROOT = Path(__file__).resolve().parents[2]

_ADDER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from rails.crypto.signing import Keystore, new_private_key

    path, ready, go, count = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
    keys = [new_private_key("ethereum") for _ in range(count)]
    store = Keystore(path)
    ready.touch()
    while not go.exists():
        time.sleep(0.005)
    print(json.dumps([store.add(key, "ethereum") for key in keys]))
    """
)

_TORN_WRITER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from rails.crypto.signing import Keystore, new_private_key

    path, writing = Path(sys.argv[1]), Path(sys.argv[2])
    real_dump = json.dump

    def dump_half_then_hang(obj, handle, **kwargs):  # the process dies in the middle of the write
        text = json.dumps(obj)
        handle.write(text[: len(text) // 2])
        handle.flush()
        writing.touch()
        time.sleep(60)

    json.dump = dump_half_then_hang
    Keystore(path).add(new_private_key("ethereum"), "ethereum")
    """
)


def _python(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(  # noqa: S603 - our own interpreter running our own script
        [sys.executable, "-c", script, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for(path: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.01)


def _transaction() -> dict:
    return {"to": "0x" + "11" * 20, "value": 1, "gas": 21000, "gasPrice": 1, "nonce": 0, "chainId": 1}


def test_keystore_add_concurrent_processes_keep_every_key(tmp_path):
    # given four processes, each about to add eight keys to the same keystore at once
    path = tmp_path / "keystore.json"
    workers = []
    for n in range(4):
        ready = tmp_path / f"ready-{n}"
        workers.append((_python(_ADDER, str(path), str(ready), str(tmp_path / "go"), "8"), ready))
    for _, ready in workers:
        _wait_for(ready)

    # when they all start together
    (tmp_path / "go").touch()
    added = []
    for process, _ in workers:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        added += json.loads(out)

    # then every key survives, any process can sign with it, and the file is still mode 600
    assert len(set(added)) == 32
    on_disk = json.loads(path.read_text())
    assert sorted(on_disk) == sorted(address.lower() for address in added)
    fresh = Keystore(path)
    assert all(fresh.has(address) for address in added)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_keystore_sign_finds_key_added_by_another_process_after_load(tmp_path):
    # given a signer that has already loaded the keystore
    path = tmp_path / "keystore.json"
    signer = Keystore(path)
    first = signer.add(new_private_key("ethereum"), "ethereum")
    signer.sign_eth_transaction(first, _transaction())

    # when another process provisions a new wallet
    process = _python(_ADDER, str(path), str(tmp_path / "ready"), str(tmp_path / "go"), "1")
    (tmp_path / "go").touch()
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    [second] = json.loads(out)

    # then the signer finds its key (re-reading the file on a miss) and still knows the first
    assert signer.sign_eth_transaction(second, _transaction())
    assert signer.has(first)
    with pytest.raises(KeyNotFound):
        signer.sign_eth_transaction("0x" + "22" * 20, _transaction())


def test_keystore_add_killed_mid_write_leaves_old_file_intact(tmp_path):
    # given a keystore with one key, and a process killed while it writes a second
    path = tmp_path / "keystore.json"
    existing = Keystore(path).add(new_private_key("ethereum"), "ethereum")
    before = path.read_bytes()
    writing = tmp_path / "writing"
    process = _python(_TORN_WRITER, str(path), str(writing))
    try:
        _wait_for(writing)
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)

    # when the next process adds a key
    after_crash = path.read_bytes()
    later = Keystore(path).add(new_private_key("ethereum"), "ethereum")

    # then the crash left the old file whole, the lock died with the process, and no key is lost
    assert after_crash == before
    assert set(json.loads(path.read_text())) == {existing.lower(), later.lower()}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_keystore_add_failed_write_keeps_old_file_and_no_temp(tmp_path, monkeypatch):
    # given a keystore with one key, and a disk that fails when the new file is flushed
    path = tmp_path / "keystore.json"
    store = Keystore(path)
    existing = store.add(new_private_key("ethereum"), "ethereum")
    before = path.read_bytes()

    def failing_fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)

    # when a key is added
    key = new_private_key("ethereum")
    with pytest.raises(OSError, match="Input/output"):
        store.add(key, "ethereum")
    monkeypatch.undo()

    # then the old file is untouched, no temporary file is left, and the key is not reported as held
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keystore.json", "keystore.json.lock"]
    assert store.has(existing)
    assert not store.has(address_for_key(key, "ethereum"))
