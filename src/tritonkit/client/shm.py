"""System shared memory for same-host clients: the tensors travel through /dev/shm instead of the socket.

One :class:`Slot` serves one request in flight and holds one region per tensor. Regions are created and
registered the first time a tensor needs them, reused by every later request, and replaced only when a
request needs more bytes than the region has. The pool never sizes a region beyond what a request needed,
because /dev/shm is often small (64 MB in a default Docker container) and writing past it kills the process.

Unlinking is guaranteed three ways: ``close()`` (the client's, also on an exception inside ``with``), a
``weakref.finalize`` that runs at garbage collection and at interpreter exit (so an uncaught Ctrl-C unlinks too),
and an immediate destroy for a region whose registration failed. A slot whose request failed in a way that leaves the
server possibly still writing into it (a client timeout, a broken connection, Ctrl-C) is never reused.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import uuid
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tritonclient.utils.shared_memory as shm

from tritonkit.client.model import ModelInfo

__all__ = ["Region", "SharedMemoryPool", "Slot", "live_keys"]

# Every region this process created and has not unlinked yet, across pools: what the finalizers unlink.
_LIVE: dict[str, Region] = {}
_LIVE_LOCK = threading.Lock()


def live_keys() -> list[str]:
    """The /dev/shm names of this process's regions not yet unlinked (for tests and diagnostics)."""
    with _LIVE_LOCK:
        return sorted(_LIVE)


class Region:
    """One registered system shared memory region: ``name`` for Triton, ``key`` for /dev/shm."""

    __slots__ = ("byte_size", "handle", "key", "name", "registered")

    def __init__(self, name: str, byte_size: int) -> None:
        self.name = name
        self.key = "/" + name
        self.byte_size = byte_size
        self.registered = False
        self.handle: Any = shm.create_shared_memory_region(name, self.key, byte_size, create_only=True)
        with _LIVE_LOCK:
            _LIVE[self.key] = self

    def destroy(self) -> None:
        """Close and unlink; safe to call twice."""
        with _LIVE_LOCK:
            if _LIVE.pop(self.key, None) is None:
                return
        try:
            shm.destroy_shared_memory_region(self.handle)
        finally:
            # If closing failed (a numpy view still exported the buffer), the name must go all the same.
            with contextlib.suppress(OSError):
                os.unlink(f"/dev/shm/{self.name}")


class Slot:
    """The regions and reusable request objects of one request in flight."""

    def __init__(self, pool: SharedMemoryPool) -> None:
        self._pool = pool
        self.regions: dict[str, Region] = {}
        self._inputs: dict[str, Any] = {}
        self._outputs: dict[str, Any] = {}

    def fit(self, sizes: Mapping[str, int]) -> tuple[list[Region], list[Region]]:
        """Make every tensor's region at least its size; return (new regions to register, old ones to retire)."""
        created: list[Region] = []
        retired: list[Region] = []
        for tensor, nbytes in sizes.items():
            region = self.regions.get(tensor)
            if region is not None and region.byte_size >= nbytes:
                continue
            if region is not None:
                retired.append(region)
            self.regions[tensor] = replacement = self._pool.new_region(nbytes)
            created.append(replacement)
        return created, retired

    def forget(self, region: Region) -> None:
        """Drop a region from this slot (its registration failed); the pool destroys it."""
        for tensor, held in list(self.regions.items()):
            if held is region:
                del self.regions[tensor]

    def bind(
        self, module: Any, info: ModelInfo, arrays: Mapping[str, np.ndarray], wanted: Sequence[str], batch: int
    ) -> tuple[list[Any], list[Any]]:
        """Copy the arrays into their regions; return the InferInputs and InferRequestedOutputs pointing there."""
        tensors = []
        for spec in info.inputs:
            array = arrays[spec.name]
            tensor = self._inputs.get(spec.name)
            if tensor is None:
                tensor = self._inputs[spec.name] = module.InferInput(spec.name, list(array.shape), spec.datatype)
            else:
                tensor.set_shape(list(array.shape))
            region = self.regions.get(spec.name)
            if region is None:  # BYTES tensors travel on the wire
                tensor.set_data_from_numpy(array)
            else:
                shm.set_shared_memory_region(region.handle, [array])
                tensor.set_shared_memory(region.name, array.nbytes)
            tensors.append(tensor)
        requested = []
        for name in wanted:
            output = self._outputs.get(name)
            if output is None:
                output = self._outputs[name] = module.InferRequestedOutput(name)
            region = self.regions.get(name)
            if region is not None:
                output.set_shared_memory(region.name, batch * (info.output(name).sample_nbytes or 0))
            requested.append(output)
        return tensors, requested

    def read(self, result: Any, info: ModelInfo, wanted: Sequence[str]) -> dict[str, np.ndarray]:
        """The outputs, copied out of the regions (the slot is reused by the next request)."""
        outputs = {}
        for name in wanted:
            region = self.regions.get(name)
            if region is None:
                outputs[name] = result.as_numpy(name)
                continue
            described = result.get_output(name)
            shape = described["shape"] if isinstance(described, dict) else described.shape
            view = shm.get_contents_as_numpy(region.handle, info.output(name).dtype, [int(d) for d in shape])
            outputs[name] = np.array(view, copy=True)
            del view  # a live view would keep the mapping from closing
        return outputs


class SharedMemoryPool:
    """The slots of one client; thread-safe, since gRPC completion callbacks release slots from other threads."""

    def __init__(self, label: str = "") -> None:
        # pid and a random token keep names unique across processes and clients on one host.
        safe_label = "".join(c if c.isalnum() else "_" for c in label)[:24]
        self.prefix = f"tritonkit_{os.getpid()}_{safe_label}_{uuid.uuid4().hex[:8]}_"
        self._counter = itertools.count()
        self._lock = threading.Lock()
        self._free: list[Slot] = []
        self._slots: list[Slot] = []
        self._regions: set[Region] = set()
        # Runs on close(), on garbage collection and at interpreter exit; holds no reference to the pool.
        self._finalizer = weakref.finalize(self, _destroy_all, self._regions)

    def new_region(self, nbytes: int) -> Region:
        region = Region(f"{self.prefix}{next(self._counter)}", max(nbytes, 1))
        with self._lock:
            self._regions.add(region)
        return region

    def acquire(self) -> Slot:
        with self._lock:
            if self._free:
                return self._free.pop()
            slot = Slot(self)
            self._slots.append(slot)
            return slot

    def release(self, slot: Slot, *, reuse: bool) -> None:
        """Give the slot back; with ``reuse`` False it stays out of use until close (the server may hold it)."""
        if reuse:
            with self._lock:
                self._free.append(slot)

    def drop(self, slot: Slot) -> None:
        """Unlink the regions of ``slot`` and of every idle slot: the server has lost its registrations.

        The next request makes and registers fresh regions.
        """
        with self._lock:
            doomed = [slot, *self._free]
            self._free.clear()
            for each in doomed:
                if each in self._slots:
                    self._slots.remove(each)
        for each in doomed:
            for region in list(each.regions.values()):
                self.destroy(region)
            each.regions.clear()

    def take_all(self) -> list[Region]:
        """Every region, removed from its slot: what close() unregisters and then destroys."""
        with self._lock:
            regions = [region for slot in self._slots for region in slot.regions.values()]
            for slot in self._slots:
                slot.regions.clear()
            self._slots.clear()
            self._free.clear()
        return regions

    def destroy(self, region: Region) -> None:
        with self._lock:
            self._regions.discard(region)
        region.destroy()

    def close(self) -> None:
        """Unlink whatever is left (the client unregisters first, where the server still answers)."""
        self._finalizer()


def _destroy_all(regions: set[Region]) -> None:
    for region in list(regions):
        with contextlib.suppress(Exception):
            region.destroy()
    regions.clear()
