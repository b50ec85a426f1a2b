"""confluent_kafka.admin's resource, config, ACL and SCRAM types, with its
names, enum values (librdkafka's) and constructor checks, so code that
builds them runs unchanged.  Only configs are implemented on one host; ACLs
and SCRAM credentials are importable and their AdminClient methods fail with
a clear "not supported on one host" KafkaException (autocreate.not_on_one_host)."""
import enum
import functools

from .admin_model import OrderedEnum as _Ordered


class ResourceType(_Ordered):
    """A Kafka resource type (librdkafka's numbering).

    :cvar TOPIC: 2, a topic (the one type with configs here). :cvar BROKER: 4, a broker ("0": the host).
        UNKNOWN 0, ANY 1 (filters), GROUP 3 and TRANSACTIONAL_ID 5 as Kafka's.
    """
    UNKNOWN = 0  #: not known or not set
    ANY = 1  #: matches any resource in a filter
    TOPIC = 2  #: a topic, named by its name
    GROUP = 3  #: a consumer group, named by group.id
    BROKER = 4  #: a broker, named by its id ("0": the host)
    TRANSACTIONAL_ID = 5  #: a transactional id


class ResourcePatternType(_Ordered):
    """How an ACL binding's resource name matches (ACLs are not supported on one host).

    :cvar LITERAL: 3, the exact name. :cvar PREFIXED: 4, names starting with it. UNKNOWN 0, ANY 1, MATCH 2 as
        Kafka's (filters).
    """
    UNKNOWN = 0
    ANY = 1
    MATCH = 2
    LITERAL = 3
    PREFIXED = 4


class AclOperation(_Ordered):
    """An operation an ACL binding allows or denies (also what ``authorized_operations`` lists).

    :cvar READ: 3. :cvar WRITE: 4. :cvar CREATE: 5. :cvar DELETE: 6. :cvar ALTER: 7. :cvar DESCRIBE: 8.
        UNKNOWN 0, ANY 1, ALL 2, CLUSTER_ACTION 9, DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11, IDEMPOTENT_WRITE 12 as
        Kafka's.
    """
    UNKNOWN = 0
    ANY = 1
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12


class AclPermissionType(_Ordered):
    """Whether an ACL binding allows or denies.

    :cvar DENY: 2. :cvar ALLOW: 3. UNKNOWN 0 and ANY 1 (filters) as Kafka's.
    """
    UNKNOWN = 0
    ANY = 1
    DENY = 2
    ALLOW = 3


class ScramMechanism(_Ordered):
    """A SASL/SCRAM mechanism (SCRAM credentials are not supported on one host).

    :cvar SCRAM_SHA_256: 1. :cvar SCRAM_SHA_512: 2. UNKNOWN 0.
    """
    UNKNOWN = 0
    SCRAM_SHA_256 = 1
    SCRAM_SHA_512 = 2


class AlterConfigOpType(enum.Enum):
    """The operation of an entry in incremental_alter_configs.

    :cvar SET: 0, set the value. :cvar DELETE: 1, revert to the default. :cvar APPEND: 2, add to a list config.
    :cvar SUBTRACT: 3, remove from a list config.
    """
    SET = 0  #: set the value
    DELETE = 1  #: revert to the default
    APPEND = 2  #: add to a list config
    SUBTRACT = 3  #: remove from a list config


class ConfigSource(enum.Enum):
    """Where a described config value comes from.

    :cvar DYNAMIC_TOPIC_CONFIG: 1, set on the topic (at creation or by an alter).
    :cvar STATIC_BROKER_CONFIG: 4, the host's broker configs. :cvar DEFAULT_CONFIG: 5, the default.
        UNKNOWN_CONFIG 0, DYNAMIC_BROKER_CONFIG 2, DYNAMIC_DEFAULT_BROKER_CONFIG 3, GROUP_CONFIG 8 as Kafka's.
    """
    UNKNOWN_CONFIG = 0
    DYNAMIC_TOPIC_CONFIG = 1  #: set on the topic (at creation or by an alter)
    DYNAMIC_BROKER_CONFIG = 2
    DYNAMIC_DEFAULT_BROKER_CONFIG = 3
    STATIC_BROKER_CONFIG = 4
    DEFAULT_CONFIG = 5  #: the default
    GROUP_CONFIG = 8


def _to_enum(value, cls, what):
    """An enum member from a member, its name (any case) or its value."""
    if isinstance(value, cls):
        return value
    if isinstance(value, str):
        try:
            return cls[value.upper()]
        except KeyError:
            raise ValueError("unknown %s %r: one of %s" % (what, value, ", ".join(m.name for m in cls))) from None
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return cls(value)
        except ValueError:
            raise ValueError("unknown %s value %r" % (what, value)) from None
    raise TypeError("%s must be a %s, got %s" % (what, cls.__name__, type(value).__name__))


class ConfigEntry:
    """A config property: described by describe_configs, or one change of
    incremental_alter_configs.

    :param str name: the property name
    :param value: its value (str, or None)
    :param ConfigSource source: where the value comes from
    :param bool is_read_only: it cannot be altered (here: fixed by the partition rings)
    :param bool is_default: the value is the default
    :param bool is_sensitive: the value is hidden
    :param bool is_synonym: a synonym of another entry
    :param dict synonyms: name -> ConfigEntry
    :param AlterConfigOpType incremental_operation: for incremental_alter_configs
    """

    def __init__(self, name, value, source=ConfigSource.UNKNOWN_CONFIG, is_read_only=False, is_default=False,
                 is_sensitive=False, is_synonym=False, synonyms=None, incremental_operation=None):
        self.name = name
        self.value = value
        self.source = source
        self.is_read_only = bool(is_read_only)
        self.is_default = bool(is_default)
        self.is_sensitive = bool(is_sensitive)
        self.is_synonym = bool(is_synonym)
        self.synonyms = {} if synonyms is None else synonyms
        self.incremental_operation = incremental_operation

    def __repr__(self):
        return 'ConfigEntry(%s="%s")' % (self.name, self.value)

    def __str__(self):
        return '%s="%s"' % (self.name, self.value)


@functools.total_ordering
class ConfigResource:
    """A resource with a configuration (a topic, here): what describe_configs
    reads and alter_configs / incremental_alter_configs change.

    :param restype: a ResourceType, its name ("topic", any case) or value
    :param str name: the resource name (a topic name; "0" for the broker)
    :param dict set_config: for alter_configs, name -> value
    :param list incremental_configs: for incremental_alter_configs, ConfigEntry objects
    """

    Type = ResourceType

    def __init__(self, restype, name, set_config=None, described_configs=None, error=None,
                 incremental_configs=None):
        if name is None:
            raise ValueError("a ConfigResource needs a name (str): the topic name, or the broker id")
        self.restype = _to_enum(restype, ResourceType, "resource type")
        self.restype_int = int(self.restype.value)
        self.name = name
        self.set_config_dict = dict(set_config) if set_config is not None else {}
        self.incremental_configs = list(incremental_configs or [])
        self.configs = described_configs
        self.error = error

    def __repr__(self):
        if self.error is not None:
            return "ConfigResource(%s,%s,%r)" % (self.restype, self.name, self.error)
        return "ConfigResource(%s,%s)" % (self.restype, self.name)

    def __hash__(self):
        return hash((self.restype, self.name))

    def __eq__(self, other):
        if not isinstance(other, ConfigResource):
            return NotImplemented
        return (self.restype, self.name) == (other.restype, other.name)

    def __lt__(self, other):
        if not isinstance(other, ConfigResource):
            return NotImplemented
        return (self.restype.value, self.name) < (other.restype.value, other.name)

    def __len__(self):
        """:returns: the number of entries set with set_config"""
        return len(self.set_config_dict)

    def set_config(self, name, value, overwrite=True):
        """Set a value for alter_configs.

        :param str name: property name
        :param str value: its value
        :param bool overwrite: replace a value already set (default True)
        """
        if overwrite or name not in self.set_config_dict:
            self.set_config_dict[name] = value

    def add_incremental_config(self, config_entry):
        """Add an entry (with its incremental_operation) for incremental_alter_configs.

        :param ConfigEntry config_entry: the change
        """
        self.incremental_configs.append(config_entry)


@functools.total_ordering
class AclBinding:
    """An ACL binding (importable; ACLs do not exist on one host: the
    namespace's owner may do everything, see AdminClient.create_acls).

    :param ResourceType restype: resource type
    :param str name: resource name
    :param ResourcePatternType resource_pattern_type: how the name matches
    :param str principal: e.g. "User:alice"
    :param str host: the host, or "*"
    :param AclOperation operation: the operation
    :param AclPermissionType permission_type: allow or deny
    """

    _nullable = ()  # positions of string attributes that may be None
    _forbidden = {"restype": (ResourceType.ANY,), "resource_pattern_type": (ResourcePatternType.ANY,
                                                                            ResourcePatternType.MATCH),
                  "operation": (AclOperation.ANY,), "permission_type": (AclPermissionType.ANY,)}
    _FIELDS = ("restype", "name", "resource_pattern_type", "principal", "host", "operation", "permission_type")
    _ENUMS = {"restype": ResourceType, "resource_pattern_type": ResourcePatternType, "operation": AclOperation,
              "permission_type": AclPermissionType}

    def __init__(self, restype, name, resource_pattern_type, principal, host, operation, permission_type):
        values = dict(zip(self._FIELDS, (restype, name, resource_pattern_type, principal, host, operation,
                                         permission_type)))
        for k, v in values.items():
            if v is None and k not in self._nullable:
                raise ValueError("%s of an %s cannot be None" % (k, type(self).__name__))
            if k in ("name", "principal", "host") and v is not None and not isinstance(v, str):
                raise TypeError("%s must be a str, got %s" % (k, type(v).__name__))
            if k in self._ENUMS:
                v = _to_enum(v, self._ENUMS[k], k)
                if v in self._forbidden.get(k, ()):
                    raise ValueError("%s=%s cannot be used in an %s" % (k, v.name, type(self).__name__))
            setattr(self, k, v)
        self.restype_int = self.restype.value
        self.resource_pattern_type_int = self.resource_pattern_type.value
        self.operation_int = self.operation.value
        self.permission_type_int = self.permission_type.value

    def _to_tuple(self):
        return tuple(getattr(self, k) for k in self._FIELDS)

    def _sort_key(self):
        return tuple(x.value if isinstance(x, enum.Enum) else (x or "") for x in self._to_tuple())

    def __repr__(self):
        return "%s(%s)" % (type(self).__name__, ",".join(str(x) for x in self._to_tuple()))

    def __hash__(self):
        return hash(self._to_tuple())

    def __eq__(self, other):
        if not isinstance(other, AclBinding):
            return NotImplemented
        return self._to_tuple() == other._to_tuple()

    def __lt__(self, other):
        if not isinstance(other, AclBinding):
            return NotImplemented
        return self._sort_key() < other._sort_key()


class AclBindingFilter(AclBinding):
    """A filter over ACL bindings: None strings and ANY enums match anything.

    :param ResourceType restype: resource type or ANY
    :param str name: resource name or None
    :param ResourcePatternType resource_pattern_type: pattern type, ANY or MATCH
    :param str principal: principal or None
    :param str host: host or None
    :param AclOperation operation: operation or ANY
    :param AclPermissionType permission_type: permission type or ANY
    """

    _nullable = ("name", "principal", "host")
    _forbidden = {"restype": (ResourceType.UNKNOWN,), "resource_pattern_type": (ResourcePatternType.UNKNOWN,),
                  "operation": (AclOperation.UNKNOWN,), "permission_type": (AclPermissionType.UNKNOWN,)}


class ScramCredentialInfo:
    """A SCRAM credential's mechanism and iterations.

    :param ScramMechanism mechanism: the mechanism
    :param int iterations: the iteration count (positive)
    """

    def __init__(self, mechanism, iterations):
        self.mechanism, self.iterations = mechanism, iterations


class UserScramCredentialsDescription:
    """A user's SCRAM credentials.

    :param str user: the user
    :param list scram_credential_infos: ScramCredentialInfo objects
    """

    def __init__(self, user, scram_credential_infos):
        self.user, self.scram_credential_infos = user, scram_credential_infos


class UserScramCredentialAlteration:
    """Base of the SCRAM credential changes.

    :param str user: the user
    """

    def __init__(self, user):
        self.user = user


class UserScramCredentialUpsertion(UserScramCredentialAlteration):
    """Create or replace a user's SCRAM credential.

    :param str user: the user
    :param ScramCredentialInfo scram_credential_info: mechanism and iterations
    :param bytes password: the password
    :param bytes salt: the salt (None: random)
    """

    def __init__(self, user, scram_credential_info, password, salt=None):
        super().__init__(user)
        self.scram_credential_info, self.password, self.salt = scram_credential_info, password, salt


class UserScramCredentialDeletion(UserScramCredentialAlteration):
    """Delete a user's SCRAM credential.

    :param str user: the user
    :param ScramMechanism mechanism: the mechanism
    """

    def __init__(self, user, mechanism):
        super().__init__(user)
        self.mechanism = mechanism


def check_scram_alterations(alterations):
    """confluent's argument checks of alter_user_scram_credentials."""
    if not isinstance(alterations, list):
        raise TypeError("alter_user_scram_credentials takes a list of UserScramCredentialAlteration")
    if not alterations:
        raise ValueError("alter_user_scram_credentials needs at least one alteration")
    for a in alterations:
        if not isinstance(a, UserScramCredentialAlteration):
            raise TypeError("each alteration must be a UserScramCredentialUpsertion or UserScramCredentialDeletion, "
                            "got %s" % type(a).__name__)
        _check_user(a.user)
        if isinstance(a, UserScramCredentialUpsertion):
            if not isinstance(a.password, bytes):
                raise TypeError("password must be bytes, got %s" % type(a.password).__name__)
            if not a.password:
                raise ValueError("password cannot be empty")
            if a.salt is not None and not isinstance(a.salt, bytes):
                raise TypeError("salt must be bytes or None, got %s" % type(a.salt).__name__)
            if a.salt is not None and not a.salt:
                raise ValueError("salt may be None (random) but not empty")
            info = a.scram_credential_info
            if not isinstance(info, ScramCredentialInfo):
                raise TypeError("scram_credential_info must be a ScramCredentialInfo")
            if not isinstance(info.mechanism, ScramMechanism):
                raise TypeError("mechanism must be a ScramMechanism")
            if not isinstance(info.iterations, int) or isinstance(info.iterations, bool):
                raise TypeError("iterations must be an int")
            if info.iterations < 1:
                raise ValueError("iterations must be positive, got %d" % info.iterations)
        elif isinstance(a, UserScramCredentialDeletion):
            if not isinstance(a.mechanism, ScramMechanism):
                raise TypeError("mechanism must be a ScramMechanism")
        else:
            raise TypeError("each alteration must be a UserScramCredentialUpsertion or UserScramCredentialDeletion")


def _check_user(user):
    if not isinstance(user, str):
        raise TypeError("user must be a str, got %s" % type(user).__name__)
    if not user:
        raise ValueError("user cannot be empty")


def check_scram_users(users):
    """confluent's argument checks of describe_user_scram_credentials."""
    if users is None:
        return
    if not isinstance(users, list):
        raise TypeError("describe_user_scram_credentials takes a list of user names or None")
    for u in users:
        _check_user(u)
