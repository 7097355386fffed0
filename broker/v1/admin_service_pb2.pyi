import datetime

from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TenantSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TENANT_SOURCE_UNSPECIFIED: _ClassVar[TenantSource]
    TENANT_SOURCE_FILES: _ClassVar[TenantSource]
    TENANT_SOURCE_STORE: _ClassVar[TenantSource]
TENANT_SOURCE_UNSPECIFIED: TenantSource
TENANT_SOURCE_FILES: TenantSource
TENANT_SOURCE_STORE: TenantSource

class TenantSettings(_message.Message):
    __slots__ = ("client", "targets", "warm", "orgnr_parent", "orgnr_child", "sfm_journal_id")
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    WARM_FIELD_NUMBER: _ClassVar[int]
    ORGNR_PARENT_FIELD_NUMBER: _ClassVar[int]
    ORGNR_CHILD_FIELD_NUMBER: _ClassVar[int]
    SFM_JOURNAL_ID_FIELD_NUMBER: _ClassVar[int]
    client: str
    targets: _containers.RepeatedScalarFieldContainer[str]
    warm: _containers.RepeatedScalarFieldContainer[str]
    orgnr_parent: str
    orgnr_child: str
    sfm_journal_id: str
    def __init__(self, client: _Optional[str] = ..., targets: _Optional[_Iterable[str]] = ..., warm: _Optional[_Iterable[str]] = ..., orgnr_parent: _Optional[str] = ..., orgnr_child: _Optional[str] = ..., sfm_journal_id: _Optional[str] = ...) -> None: ...

class Tenant(_message.Message):
    __slots__ = ("name", "settings", "source")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    settings: TenantSettings
    source: TenantSource
    def __init__(self, name: _Optional[str] = ..., settings: _Optional[_Union[TenantSettings, _Mapping]] = ..., source: _Optional[_Union[TenantSource, str]] = ...) -> None: ...

class ListTenantsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTenantsResponse(_message.Message):
    __slots__ = ("tenants", "next_page_token")
    TENANTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tenants: _containers.RepeatedCompositeFieldContainer[Tenant]
    next_page_token: str
    def __init__(self, tenants: _Optional[_Iterable[_Union[Tenant, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetTenantRequest(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    def __init__(self, tenant: _Optional[str] = ...) -> None: ...

class GetTenantResponse(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: Tenant
    def __init__(self, tenant: _Optional[_Union[Tenant, _Mapping]] = ...) -> None: ...

class UpsertTenantRequest(_message.Message):
    __slots__ = ("tenant", "settings")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    settings: TenantSettings
    def __init__(self, tenant: _Optional[str] = ..., settings: _Optional[_Union[TenantSettings, _Mapping]] = ...) -> None: ...

class UpsertTenantResponse(_message.Message):
    __slots__ = ("tenant", "created")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    tenant: Tenant
    created: bool
    def __init__(self, tenant: _Optional[_Union[Tenant, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class DeleteTenantRequest(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    def __init__(self, tenant: _Optional[str] = ...) -> None: ...

class DeleteTenantResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReloadConfigurationRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReloadConfigurationResponse(_message.Message):
    __slots__ = ("tenants", "added_tenants", "removed_tenants", "routes_added", "routes_removed", "tokens_dropped", "warming", "needs_restart")
    TENANTS_FIELD_NUMBER: _ClassVar[int]
    ADDED_TENANTS_FIELD_NUMBER: _ClassVar[int]
    REMOVED_TENANTS_FIELD_NUMBER: _ClassVar[int]
    ROUTES_ADDED_FIELD_NUMBER: _ClassVar[int]
    ROUTES_REMOVED_FIELD_NUMBER: _ClassVar[int]
    TOKENS_DROPPED_FIELD_NUMBER: _ClassVar[int]
    WARMING_FIELD_NUMBER: _ClassVar[int]
    NEEDS_RESTART_FIELD_NUMBER: _ClassVar[int]
    tenants: int
    added_tenants: _containers.RepeatedScalarFieldContainer[str]
    removed_tenants: _containers.RepeatedScalarFieldContainer[str]
    routes_added: int
    routes_removed: int
    tokens_dropped: int
    warming: int
    needs_restart: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tenants: _Optional[int] = ..., added_tenants: _Optional[_Iterable[str]] = ..., removed_tenants: _Optional[_Iterable[str]] = ..., routes_added: _Optional[int] = ..., routes_removed: _Optional[int] = ..., tokens_dropped: _Optional[int] = ..., warming: _Optional[int] = ..., needs_restart: _Optional[_Iterable[str]] = ...) -> None: ...

class GetPublicJwksRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ClientPublicKey(_message.Message):
    __slots__ = ("client", "client_id", "jwk_json", "kid", "alg", "thumbprint", "location", "current", "expire_time", "origin", "retire_time")
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    JWK_JSON_FIELD_NUMBER: _ClassVar[int]
    KID_FIELD_NUMBER: _ClassVar[int]
    ALG_FIELD_NUMBER: _ClassVar[int]
    THUMBPRINT_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    RETIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    client: str
    client_id: str
    jwk_json: str
    kid: str
    alg: str
    thumbprint: str
    location: str
    current: bool
    expire_time: _timestamp_pb2.Timestamp
    origin: str
    retire_time: _timestamp_pb2.Timestamp
    def __init__(self, client: _Optional[str] = ..., client_id: _Optional[str] = ..., jwk_json: _Optional[str] = ..., kid: _Optional[str] = ..., alg: _Optional[str] = ..., thumbprint: _Optional[str] = ..., location: _Optional[str] = ..., current: _Optional[bool] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., origin: _Optional[str] = ..., retire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetPublicJwksResponse(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[ClientPublicKey]
    def __init__(self, keys: _Optional[_Iterable[_Union[ClientPublicKey, _Mapping]]] = ...) -> None: ...
