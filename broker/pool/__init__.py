"""Process pools and queues over shmbroker's shared memory (issue 9).

``broker.pool.Executor`` (a ``concurrent.futures.Executor``) and
``broker.pool.Pool`` (``multiprocessing.Pool``'s API): a worker killed
mid-task is replaced and its task runs again elsewhere."""
from .executor import Executor
from .pool import Pool

__all__ = ["Executor", "Pool"]
