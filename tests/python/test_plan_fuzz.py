"""Hostile plans: mutate a real plan's body and re-seal it with correct CRC-32C checksums
(docs/plan-format.md), so the mutations reach the validator behind the checksum. Loading
must fail with a KilnError or give an engine that runs or fails cleanly: never a crash.
Run under AddressSanitizer for full value (LD_PRELOAD=libasan.so with a
-DKILN_SANITIZE=ON build)."""

import struct

import numpy as np
import pytest

import kiln_ctypes as K
from kiln_ctypes import KilnError, build
from test_api import _small_net


def _crc32c_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


_T = _crc32c_table()


def crc32c(b):
    c = 0xFFFFFFFF
    for x in b:
        c = _T[(c ^ x) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def reseal(b):
    """Sets file_size, body_crc and header_crc of a plan (header layout v1)."""
    b = bytearray(b)
    struct.pack_into("<Q", b, 24, len(b))
    struct.pack_into("<I", b, 32, crc32c(bytes(b[64:])))
    struct.pack_into("<I", b, 40, 0)
    struct.pack_into("<I", b, 40, crc32c(bytes(b[:64])))
    return bytes(b)


@pytest.fixture(scope="module")
def plan():
    net, _, _ = _small_net(np.random.default_rng(0))
    return build(net).serialize()


def test_reseal_is_identity_on_a_good_plan(plan):
    assert plan[:8] == b"KILNPLAN"
    assert reseal(plan) == plan


def _mutate(rng, blob, kind):
    b = bytearray(blob)
    n_sections = struct.unpack_from("<I", blob, 36)[0]
    secs = [struct.unpack_from("<IIQQ", blob, 64 + 24 * i) for i in range(n_sections)]
    weights = [s for s in secs if s[0] == 7]
    limit = weights[0][2] if weights else len(blob)  # everything before the weights
    if kind == 0:
        b[rng.integers(64, limit)] = rng.integers(256)
    elif kind == 1:
        p = int(rng.integers(64, limit - 8))
        v = int(rng.choice([0, 1, 0xFFFFFFFF, 0x7FFFFFFF, 64, 4096, int(rng.integers(1 << 32))]))
        struct.pack_into("<I", b, p - p % 4, v)
    elif kind == 2:
        p = int(rng.integers(64, limit - 8))
        v = int(rng.choice([0, -1, 1 << 62, -(1 << 62), 64, len(blob),
                            int(rng.integers(-1000, 1000))]))
        struct.pack_into("<q", b, p - p % 8, v)
    else:
        for _ in range(2):
            b[rng.integers(64, limit)] ^= 1 << int(rng.integers(8))
    return reseal(b)


def _try(load):
    x = np.random.default_rng(1).uniform(-1, 1, size=(2, 3, 4, 4)).astype(np.float32)
    try:
        eng = load()
    except KilnError as e:
        assert e.status != "KILN_ERR_INTERNAL", e.message
        return "refused"
    try:
        # bind by the engine's own names: a mutated name must not matter here
        ctx = eng.create_context()
        feeds = {}
        for name in eng.inputs:
            dt, shape = eng.tensor_info(name)
            feeds[name] = np.zeros(shape, dt) if dt != np.float32 or shape != x.shape else x
        ctx.infer(feeds)
        return "ran"
    except KilnError as e:
        assert e.status != "KILN_ERR_INTERNAL", e.message
        return "run refused"
    except (MemoryError, ValueError, TypeError):
        return "unbindable"  # e.g. a mutated shape too large for numpy


@pytest.mark.parametrize("seed", range(4))
def test_mutated_plans_from_memory(plan, seed):
    rng = np.random.default_rng(seed)
    seen = {}
    for it in range(250):
        blob = _mutate(rng, plan, it % 4)
        r = _try(lambda: K.Engine.load_memory(blob))
        seen[r] = seen.get(r, 0) + 1
    assert seen.get("refused", 0) > 0


def test_mutated_plans_from_file(plan, tmp_path):
    rng = np.random.default_rng(99)
    path = tmp_path / "m.plan"
    for it in range(60):
        path.write_bytes(_mutate(rng, plan, it % 4))
        _try(lambda: K.Engine.load(path))


def test_unsealed_mutation_is_refused_by_checksum(plan):
    b = bytearray(plan)
    b[len(b) // 3] ^= 0x10
    with pytest.raises(KilnError) as e:
        K.Engine.load_memory(bytes(b))
    assert e.value.status == "KILN_ERR_CORRUPT_PLAN"


def test_other_format_version_refused(plan):
    b = bytearray(plan)
    struct.pack_into("<I", b, 8, 2)
    with pytest.raises(KilnError) as e:
        K.Engine.load_memory(reseal(b))
    assert e.value.status == "KILN_ERR_VERSION"


def test_unknown_cpu_feature_refused(plan):
    b = bytearray(plan)
    struct.pack_into("<Q", b, 16, 1 << 40)
    with pytest.raises(KilnError) as e:
        K.Engine.load_memory(reseal(b))
    assert e.value.status in ("KILN_ERR_DEVICE", "KILN_ERR_CORRUPT_PLAN")
