"""shmbroker's shared-memory layer: segments and the partition log."""
from ._version import __version__
from .errors import CorruptSegmentError, MessageTooLargeError
from .log import BLOCK, CRASH_POINTS, OVERWRITE, Lapped, NotYet, PartitionLog, Record, Skipped
from .segment import Segment

__all__ = ["__version__", "PartitionLog", "Record", "NotYet", "Lapped", "Skipped", "Segment",
           "OVERWRITE", "BLOCK", "CRASH_POINTS", "CorruptSegmentError", "MessageTooLargeError"]
