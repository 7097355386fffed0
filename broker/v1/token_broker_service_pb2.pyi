import datetime

from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TokenType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TOKEN_TYPE_UNSPECIFIED: _ClassVar[TokenType]
    TOKEN_TYPE_BEARER: _ClassVar[TokenType]
    TOKEN_TYPE_DPOP: _ClassVar[TokenType]
TOKEN_TYPE_UNSPECIFIED: TokenType
TOKEN_TYPE_BEARER: TokenType
TOKEN_TYPE_DPOP: TokenType

class AccessToken(_message.Message):
    __slots__ = ("token", "token_type", "expire_time", "scopes", "audiences", "rejected_scopes", "dpop_jkt")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_TYPE_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    AUDIENCES_FIELD_NUMBER: _ClassVar[int]
    REJECTED_SCOPES_FIELD_NUMBER: _ClassVar[int]
    DPOP_JKT_FIELD_NUMBER: _ClassVar[int]
    token: str
    token_type: TokenType
    expire_time: _timestamp_pb2.Timestamp
    scopes: _containers.RepeatedScalarFieldContainer[str]
    audiences: _containers.RepeatedScalarFieldContainer[str]
    rejected_scopes: _containers.RepeatedScalarFieldContainer[str]
    dpop_jkt: str
    def __init__(self, token: _Optional[str] = ..., token_type: _Optional[_Union[TokenType, str]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., scopes: _Optional[_Iterable[str]] = ..., audiences: _Optional[_Iterable[str]] = ..., rejected_scopes: _Optional[_Iterable[str]] = ..., dpop_jkt: _Optional[str] = ...) -> None: ...

class GetTokenRequest(_message.Message):
    __slots__ = ("tenant", "target", "min_remaining_lifetime")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    MIN_REMAINING_LIFETIME_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    target: str
    min_remaining_lifetime: _duration_pb2.Duration
    def __init__(self, tenant: _Optional[str] = ..., target: _Optional[str] = ..., min_remaining_lifetime: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class GetTokenResponse(_message.Message):
    __slots__ = ("access_token",)
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    access_token: AccessToken
    def __init__(self, access_token: _Optional[_Union[AccessToken, _Mapping]] = ...) -> None: ...

class AuthorizeRequestRequest(_message.Message):
    __slots__ = ("tenant", "target", "http_method", "url", "dpop_nonce", "min_remaining_lifetime", "care_context")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    HTTP_METHOD_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    DPOP_NONCE_FIELD_NUMBER: _ClassVar[int]
    MIN_REMAINING_LIFETIME_FIELD_NUMBER: _ClassVar[int]
    CARE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    target: str
    http_method: str
    url: str
    dpop_nonce: str
    min_remaining_lifetime: _duration_pb2.Duration
    care_context: CareContext
    def __init__(self, tenant: _Optional[str] = ..., target: _Optional[str] = ..., http_method: _Optional[str] = ..., url: _Optional[str] = ..., dpop_nonce: _Optional[str] = ..., min_remaining_lifetime: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., care_context: _Optional[_Union[CareContext, _Mapping]] = ...) -> None: ...

class AuthorizeRequestResponse(_message.Message):
    __slots__ = ("authorization", "dpop", "token_type", "expire_time", "headers")
    AUTHORIZATION_FIELD_NUMBER: _ClassVar[int]
    DPOP_FIELD_NUMBER: _ClassVar[int]
    TOKEN_TYPE_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    authorization: str
    dpop: str
    token_type: TokenType
    expire_time: _timestamp_pb2.Timestamp
    headers: _containers.RepeatedCompositeFieldContainer[HttpHeader]
    def __init__(self, authorization: _Optional[str] = ..., dpop: _Optional[str] = ..., token_type: _Optional[_Union[TokenType, str]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., headers: _Optional[_Iterable[_Union[HttpHeader, _Mapping]]] = ...) -> None: ...

class HttpHeader(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class CareContext(_message.Message):
    __slots__ = ("patient_id", "practitioner", "care_relationship", "access_basis", "event_id", "source_system")
    PATIENT_ID_FIELD_NUMBER: _ClassVar[int]
    PRACTITIONER_FIELD_NUMBER: _ClassVar[int]
    CARE_RELATIONSHIP_FIELD_NUMBER: _ClassVar[int]
    ACCESS_BASIS_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_SYSTEM_FIELD_NUMBER: _ClassVar[int]
    patient_id: str
    practitioner: Practitioner
    care_relationship: CareRelationship
    access_basis: str
    event_id: str
    source_system: str
    def __init__(self, patient_id: _Optional[str] = ..., practitioner: _Optional[_Union[Practitioner, _Mapping]] = ..., care_relationship: _Optional[_Union[CareRelationship, _Mapping]] = ..., access_basis: _Optional[str] = ..., event_id: _Optional[str] = ..., source_system: _Optional[str] = ...) -> None: ...

class Practitioner(_message.Message):
    __slots__ = ("hpr_number", "authorization", "legal_entity", "point_of_care", "department")
    HPR_NUMBER_FIELD_NUMBER: _ClassVar[int]
    AUTHORIZATION_FIELD_NUMBER: _ClassVar[int]
    LEGAL_ENTITY_FIELD_NUMBER: _ClassVar[int]
    POINT_OF_CARE_FIELD_NUMBER: _ClassVar[int]
    DEPARTMENT_FIELD_NUMBER: _ClassVar[int]
    hpr_number: str
    authorization: str
    legal_entity: str
    point_of_care: str
    department: str
    def __init__(self, hpr_number: _Optional[str] = ..., authorization: _Optional[str] = ..., legal_entity: _Optional[str] = ..., point_of_care: _Optional[str] = ..., department: _Optional[str] = ...) -> None: ...

class CareRelationship(_message.Message):
    __slots__ = ("healthcare_service", "purpose_of_use", "purpose_of_use_details", "decision_ref", "user_selected")
    HEALTHCARE_SERVICE_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_OF_USE_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_OF_USE_DETAILS_FIELD_NUMBER: _ClassVar[int]
    DECISION_REF_FIELD_NUMBER: _ClassVar[int]
    USER_SELECTED_FIELD_NUMBER: _ClassVar[int]
    healthcare_service: str
    purpose_of_use: str
    purpose_of_use_details: str
    decision_ref: str
    user_selected: bool
    def __init__(self, healthcare_service: _Optional[str] = ..., purpose_of_use: _Optional[str] = ..., purpose_of_use_details: _Optional[str] = ..., decision_ref: _Optional[str] = ..., user_selected: _Optional[bool] = ...) -> None: ...

class WatchTokenRequest(_message.Message):
    __slots__ = ("tenant", "target")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    target: str
    def __init__(self, tenant: _Optional[str] = ..., target: _Optional[str] = ...) -> None: ...

class WatchTokenResponse(_message.Message):
    __slots__ = ("access_token",)
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    access_token: AccessToken
    def __init__(self, access_token: _Optional[_Union[AccessToken, _Mapping]] = ...) -> None: ...

class ExchangeTokenRequest(_message.Message):
    __slots__ = ("tenant", "target", "subject_token", "min_remaining_lifetime")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    MIN_REMAINING_LIFETIME_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    target: str
    subject_token: str
    min_remaining_lifetime: _duration_pb2.Duration
    def __init__(self, tenant: _Optional[str] = ..., target: _Optional[str] = ..., subject_token: _Optional[str] = ..., min_remaining_lifetime: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ExchangeTokenResponse(_message.Message):
    __slots__ = ("access_token",)
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    access_token: AccessToken
    def __init__(self, access_token: _Optional[_Union[AccessToken, _Mapping]] = ...) -> None: ...

class StartLoginRequest(_message.Message):
    __slots__ = ("tenant", "targets", "redirect_uri", "login_hint", "care_context")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    REDIRECT_URI_FIELD_NUMBER: _ClassVar[int]
    LOGIN_HINT_FIELD_NUMBER: _ClassVar[int]
    CARE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    targets: _containers.RepeatedScalarFieldContainer[str]
    redirect_uri: str
    login_hint: str
    care_context: CareContext
    def __init__(self, tenant: _Optional[str] = ..., targets: _Optional[_Iterable[str]] = ..., redirect_uri: _Optional[str] = ..., login_hint: _Optional[str] = ..., care_context: _Optional[_Union[CareContext, _Mapping]] = ...) -> None: ...

class StartLoginResponse(_message.Message):
    __slots__ = ("authorization_url", "state", "expire_time")
    AUTHORIZATION_URL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    authorization_url: str
    state: str
    expire_time: _timestamp_pb2.Timestamp
    def __init__(self, authorization_url: _Optional[str] = ..., state: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CompleteLoginRequest(_message.Message):
    __slots__ = ("state", "code", "issuer")
    STATE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    state: str
    code: str
    issuer: str
    def __init__(self, state: _Optional[str] = ..., code: _Optional[str] = ..., issuer: _Optional[str] = ...) -> None: ...

class CompleteLoginResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: UserSession
    def __init__(self, session: _Optional[_Union[UserSession, _Mapping]] = ...) -> None: ...

class UserSession(_message.Message):
    __slots__ = ("session_id", "tenant", "targets", "user", "expire_time")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    tenant: str
    targets: _containers.RepeatedScalarFieldContainer[str]
    user: User
    expire_time: _timestamp_pb2.Timestamp
    def __init__(self, session_id: _Optional[str] = ..., tenant: _Optional[str] = ..., targets: _Optional[_Iterable[str]] = ..., user: _Optional[_Union[User, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class User(_message.Message):
    __slots__ = ("subject", "pid", "hpr_number", "security_level", "assurance_level", "name", "given_name", "family_name")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    HPR_NUMBER_FIELD_NUMBER: _ClassVar[int]
    SECURITY_LEVEL_FIELD_NUMBER: _ClassVar[int]
    ASSURANCE_LEVEL_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    GIVEN_NAME_FIELD_NUMBER: _ClassVar[int]
    FAMILY_NAME_FIELD_NUMBER: _ClassVar[int]
    subject: str
    pid: str
    hpr_number: str
    security_level: str
    assurance_level: str
    name: str
    given_name: str
    family_name: str
    def __init__(self, subject: _Optional[str] = ..., pid: _Optional[str] = ..., hpr_number: _Optional[str] = ..., security_level: _Optional[str] = ..., assurance_level: _Optional[str] = ..., name: _Optional[str] = ..., given_name: _Optional[str] = ..., family_name: _Optional[str] = ...) -> None: ...

class GetSessionTokenRequest(_message.Message):
    __slots__ = ("session_id", "target", "min_remaining_lifetime", "care_context")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    MIN_REMAINING_LIFETIME_FIELD_NUMBER: _ClassVar[int]
    CARE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    target: str
    min_remaining_lifetime: _duration_pb2.Duration
    care_context: CareContext
    def __init__(self, session_id: _Optional[str] = ..., target: _Optional[str] = ..., min_remaining_lifetime: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., care_context: _Optional[_Union[CareContext, _Mapping]] = ...) -> None: ...

class GetSessionTokenResponse(_message.Message):
    __slots__ = ("access_token",)
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    access_token: AccessToken
    def __init__(self, access_token: _Optional[_Union[AccessToken, _Mapping]] = ...) -> None: ...

class AuthorizeSessionRequestRequest(_message.Message):
    __slots__ = ("session_id", "target", "http_method", "url", "dpop_nonce", "care_context")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    HTTP_METHOD_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    DPOP_NONCE_FIELD_NUMBER: _ClassVar[int]
    CARE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    target: str
    http_method: str
    url: str
    dpop_nonce: str
    care_context: CareContext
    def __init__(self, session_id: _Optional[str] = ..., target: _Optional[str] = ..., http_method: _Optional[str] = ..., url: _Optional[str] = ..., dpop_nonce: _Optional[str] = ..., care_context: _Optional[_Union[CareContext, _Mapping]] = ...) -> None: ...

class AuthorizeSessionRequestResponse(_message.Message):
    __slots__ = ("authorization", "dpop", "token_type", "expire_time", "headers")
    AUTHORIZATION_FIELD_NUMBER: _ClassVar[int]
    DPOP_FIELD_NUMBER: _ClassVar[int]
    TOKEN_TYPE_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    authorization: str
    dpop: str
    token_type: TokenType
    expire_time: _timestamp_pb2.Timestamp
    headers: _containers.RepeatedCompositeFieldContainer[HttpHeader]
    def __init__(self, authorization: _Optional[str] = ..., dpop: _Optional[str] = ..., token_type: _Optional[_Union[TokenType, str]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., headers: _Optional[_Iterable[_Union[HttpHeader, _Mapping]]] = ...) -> None: ...

class EndSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class EndSessionResponse(_message.Message):
    __slots__ = ("revoked",)
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    revoked: bool
    def __init__(self, revoked: _Optional[bool] = ...) -> None: ...

class GetBrokerInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetBrokerInfoResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: str
    def __init__(self, version: _Optional[str] = ...) -> None: ...
