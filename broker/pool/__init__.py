"""Process pools on the broker (issue 9): queues that survive a getter's
death (``Queue``, ``JoinableQueue``, ``SimpleQueue``, also exported by
``broker``)."""
from .queue import JoinableQueue, Queue, SimpleQueue

__all__ = ["Queue", "JoinableQueue", "SimpleQueue"]
