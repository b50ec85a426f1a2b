"""AdminClient's calls for what one host does not have - ACLs, SASL/SCRAM
credentials, leader election: they check their arguments as confluent-kafka
does (TypeError/ValueError from the call) and then fail with a clear
KafkaException saying why the feature cannot exist here, never an
AttributeError."""
from shm.errors import KafkaError

from . import admin_checks as C
from . import admin_types as T
from .admin_model import ElectionType
from .admin_ops import failed as _failed
from .admin_types import AclBinding, AclBindingFilter
from .autocreate import WHY_SASL, not_on_one_host
from .message import TopicPartition

_TIMEOUTS = ("request_timeout", "operation_timeout")


class NotOnOneHost:
    """AdminClient's methods for Kafka features that one host cannot have."""

    def create_acls(self, acls, **kwargs):
        """ACLs do not exist on one host (the namespace's segments are its
        owner's, mode 0600: see shm.mode); the futures fail with SECURITY_DISABLED.

        :param list acls: AclBinding objects
        :param float request_timeout: accepted
        :returns: {AclBinding: Future}"""
        C.no_duplicates(list(acls), "ACL bindings")
        acls = C.items(acls, AclBinding, "create_acls")
        C.options(kwargs, ("request_timeout",))
        return {a: _failed(self._no_acls()) for a in acls}

    def describe_acls(self, acl_binding_filter, **kwargs):
        """:param AclBindingFilter acl_binding_filter: the filter
        :param float request_timeout: accepted
        :returns: Future failing with SECURITY_DISABLED (no ACLs on one host)"""
        if not isinstance(acl_binding_filter, AclBindingFilter):
            raise TypeError("describe_acls takes an AclBindingFilter, got %s" % type(acl_binding_filter).__name__)
        C.options(kwargs, ("request_timeout",))
        return _failed(self._no_acls())

    def delete_acls(self, acl_binding_filters, **kwargs):
        """:param list acl_binding_filters: AclBindingFilter objects
        :param float request_timeout: accepted
        :returns: {AclBindingFilter: Future failing with SECURITY_DISABLED}"""
        C.no_duplicates(list(acl_binding_filters), "ACL binding filters")
        filters = C.items(acl_binding_filters, AclBindingFilter, "delete_acls")
        C.options(kwargs, ("request_timeout",))
        return {f: _failed(self._no_acls()) for f in filters}

    @staticmethod
    def _no_acls():
        return not_on_one_host("ACLs", "a namespace belongs to the user who created it (shm.mode sets who else may "
                               "use it); there is no authorizer", KafkaError.SECURITY_DISABLED)

    @staticmethod
    def _no_scram():
        return not_on_one_host("SASL/SCRAM credentials", WHY_SASL)

    def describe_user_scram_credentials(self, users=None, **kwargs):
        """:param list users: user names, or None for all
        :param float request_timeout: accepted
        :returns: a Future (users None) or {user: Future}, failing: no SCRAM on one host"""
        T.check_scram_users(users)
        C.options(kwargs, ("request_timeout",))
        if users is None:
            return _failed(self._no_scram())
        return {u: _failed(self._no_scram()) for u in users}

    def alter_user_scram_credentials(self, alterations, **kwargs):
        """:param list alterations: UserScramCredentialUpsertion / UserScramCredentialDeletion objects
        :param float request_timeout: accepted
        :returns: {user: Future failing: no SCRAM on one host}"""
        T.check_scram_alterations(alterations)
        C.options(kwargs, ("request_timeout",))
        return {a.user: _failed(self._no_scram()) for a in alterations}

    def set_sasl_credentials(self, username, password):
        """:param str username: user
        :param str password: password
        :raises KafkaException: there is no SASL on one host"""
        if not isinstance(username, str) or not isinstance(password, str):
            raise TypeError("username and password must be str")
        raise not_on_one_host("SASL", WHY_SASL)

    def elect_leaders(self, election_type, partitions=None, **kwargs):
        """:param ElectionType election_type: PREFERRED or UNCLEAN
        :param list partitions: TopicPartition objects, or None for all
        :param float request_timeout: accepted
        :param float operation_timeout: accepted
        :returns: Future failing: one host has one replica per partition, nothing to elect"""
        if not isinstance(election_type, ElectionType):
            raise TypeError("election_type must be an ElectionType, got %s" % type(election_type).__name__)
        if partitions is not None:
            if not isinstance(partitions, list):
                raise TypeError("partitions must be a list of TopicPartition or None")
            for tp in partitions:
                if not isinstance(tp, TopicPartition):
                    raise TypeError("partitions must be TopicPartition objects, got %s" % type(tp).__name__)
                if tp.partition < 0:
                    raise ValueError("partition must be >= 0, got %d" % tp.partition)
        C.options(kwargs, _TIMEOUTS)
        return _failed(not_on_one_host("Leader election", "one host keeps one replica of each partition, which is "
                                       "always its leader"))

