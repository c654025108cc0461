import torch

from dllm.models.cache import KVCache, query_positions, start_cache


def kv(length, value):
    return torch.full((1, 1, length, 2), float(value))


def test_append_commit_and_uncommitted_reads():
    cache = KVCache(num_layers=1)
    k, v = cache.extend(0, kv(2, 1), kv(2, 1), commit=True, replace_position=None)
    assert cache.length == 2 and k.shape[2] == 2
    k, _ = cache.extend(0, kv(3, 2), kv(3, 2), commit=False, replace_position=None)
    assert k[0, 0, :, 0].tolist() == [1, 1, 2, 2, 2] and cache.length == 2  # read, not stored


def test_replace_position_writes_in_place():
    cache = KVCache(num_layers=1)
    cache.extend(0, kv(6, 0), kv(6, 0), commit=True, replace_position=None)
    k, _ = cache.extend(0, kv(2, 7), kv(2, 7), commit=True, replace_position=2)
    assert k[0, 0, :, 0].tolist() == [0, 0, 7, 7, 0, 0] and cache.length == 6
    assert torch.equal(cache.layer(0)[0], k)


def test_crop_and_positions():
    cache = KVCache(num_layers=2)
    for layer in range(2):
        cache.extend(layer, kv(5, 1), kv(5, 1), commit=True, replace_position=None)
    cache.crop(3)
    assert cache.length == 3 and cache.layer(1)[1].shape[2] == 3
    assert query_positions(2, cache, None, "cpu").tolist() == [3, 4]
    assert query_positions(2, cache, 1, "cpu").tolist() == [1, 2]
    assert query_positions(2, None, None, "cpu").tolist() == [0, 1]


def test_start_cache():
    existing = KVCache(1)
    assert start_cache(existing, False, 1) is existing
    assert start_cache(None, False, 1) is None
    assert isinstance(start_cache(None, True, 3), KVCache)


def test_appending_grows_by_doubling_without_copying_each_step():
    cache = KVCache(num_layers=1)
    cache.extend(0, kv(4, 1), kv(4, 1), commit=True, replace_position=None)
    cache.extend(0, kv(4, 2), kv(4, 2), commit=False, replace_position=None)  # grows to 8 once
    buffer = cache.keys[0]
    for _ in range(3):  # later uncommitted steps reuse the slots after the cache: no copy
        cache.extend(0, kv(4, 2), kv(4, 2), commit=False, replace_position=None)
        assert cache.length == 4 and cache.keys[0] is buffer
    cache.extend(0, kv(4, 3), kv(4, 3), commit=True, replace_position=None)  # fits: 8 = 2 x 4
    assert cache.keys[0] is buffer and cache.length == 8
    cache.extend(0, kv(4, 4), kv(4, 4), commit=True, replace_position=None)
    assert cache.keys[0].shape[2] == 16 and cache.layer(0)[0][0, 0, :, 0].tolist() == [1] * 4 + [3] * 4 + [4] * 4
