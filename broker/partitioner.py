"""Partitioners under librdkafka's names.  Hashes are bit-exact with the
Java client (murmur2) and librdkafka (crc32, fnv1a); they run in C."""
import random as _random
import zlib

from shm._native import lib

from shm.errors import ConfigError


def _bytes(key):
    if key is None:
        return None
    if isinstance(key, str):
        return key.encode()
    return bytes(key)


def murmur2(key, partition_count):
    """The partition Java Kafka's default partitioner gives *key*:
    ``toPositive(murmur2(key)) % partition_count``."""
    k = _bytes(key) or b""
    return (lib.part_murmur2(k, len(k)) & 0x7FFFFFFF) % partition_count


def consistent(key, partition_count):
    """librdkafka's ``consistent``: ``crc32(key) % partition_count``."""
    k = _bytes(key) or b""
    return zlib.crc32(k) % partition_count


def fnv1a(key, partition_count):
    """librdkafka's ``fnv1a``: ``fnv1a(key) % partition_count``."""
    k = _bytes(key) or b""
    return lib.part_fnv1a(k, len(k)) % partition_count


def _rand(key, n):
    return _random.randrange(n)


def _keyed_or_random(fn, random_for_empty):
    def part(key, n):
        if key is None or (random_for_empty and len(key) == 0):
            return _random.randrange(n)
        return fn(key, n)
    return part


PARTITIONERS = {
    "random": _rand,
    "consistent": consistent,                                  # NULL and empty keys -> one partition
    "consistent_random": _keyed_or_random(consistent, True),   # NULL and empty keys -> random
    "murmur2": murmur2,                                        # NULL keys -> one partition
    "murmur2_random": _keyed_or_random(murmur2, False),        # NULL keys -> random (Java's default)
    "fnv1a": fnv1a,
    "fnv1a_random": _keyed_or_random(fnv1a, False),
}


def get(name):
    try:
        return PARTITIONERS[name]
    except KeyError:
        raise ConfigError("partitioner %r is not one of librdkafka's: %s" % (name, ", ".join(sorted(PARTITIONERS))))
