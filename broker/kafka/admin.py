"""confluent_kafka.admin's names, for ``broker.kafka``."""
from broker.admin import *  # noqa: F401,F403
from broker.admin import __all__  # noqa: F401
