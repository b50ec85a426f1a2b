"""Specific exceptions of shmbroker (all ``KafkaException`` subclasses).

Defined in :mod:`shm.errors`, the lowest layer, so that the C status funnel
raises these very classes; this module is their public home.
"""
from shm.errors import *  # noqa: F401,F403
from shm.errors import __all__  # noqa: F401
