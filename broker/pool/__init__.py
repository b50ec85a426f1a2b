"""Process pools and queues over shmbroker's shared memory.

``Queue``, ``JoinableQueue``, ``SimpleQueue`` (also exported by ``broker``):
multiprocessing's queues whose items survive a getter's death.
``Executor`` (a ``concurrent.futures.Executor``) and ``Pool``
(``multiprocessing.Pool``'s API): a worker killed mid-task is replaced and
its task runs again elsewhere."""
from .executor import Executor
from .pool import Pool
from .queue import JoinableQueue, Queue, SimpleQueue

__all__ = ["Executor", "Pool", "Queue", "JoinableQueue", "SimpleQueue"]
