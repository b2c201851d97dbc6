from dockyard.api.services.images.v1 import images_pb2 as _images_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Auth(_message.Message):
    __slots__ = ("username", "password", "identitytoken", "registrytoken")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    IDENTITYTOKEN_FIELD_NUMBER: _ClassVar[int]
    REGISTRYTOKEN_FIELD_NUMBER: _ClassVar[int]
    username: str
    password: str
    identitytoken: str
    registrytoken: str
    def __init__(self, username: _Optional[str] = ..., password: _Optional[str] = ..., identitytoken: _Optional[str] = ..., registrytoken: _Optional[str] = ...) -> None: ...

class RegistryOptions(_message.Message):
    __slots__ = ("auth", "plain_http")
    AUTH_FIELD_NUMBER: _ClassVar[int]
    PLAIN_HTTP_FIELD_NUMBER: _ClassVar[int]
    auth: Auth
    plain_http: bool
    def __init__(self, auth: _Optional[_Union[Auth, _Mapping]] = ..., plain_http: _Optional[bool] = ...) -> None: ...

class PullRequest(_message.Message):
    __slots__ = ("ref", "platform", "registry", "max_concurrent_downloads", "skip_unpack")
    REF_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENT_DOWNLOADS_FIELD_NUMBER: _ClassVar[int]
    SKIP_UNPACK_FIELD_NUMBER: _ClassVar[int]
    ref: str
    platform: str
    registry: RegistryOptions
    max_concurrent_downloads: int
    skip_unpack: bool
    def __init__(self, ref: _Optional[str] = ..., platform: _Optional[str] = ..., registry: _Optional[_Union[RegistryOptions, _Mapping]] = ..., max_concurrent_downloads: _Optional[int] = ..., skip_unpack: _Optional[bool] = ...) -> None: ...

class PushRequest(_message.Message):
    __slots__ = ("ref", "registry", "chunk_size")
    REF_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    ref: str
    registry: RegistryOptions
    chunk_size: int
    def __init__(self, ref: _Optional[str] = ..., registry: _Optional[_Union[RegistryOptions, _Mapping]] = ..., chunk_size: _Optional[int] = ...) -> None: ...

class ExportRequest(_message.Message):
    __slots__ = ("names", "snapshot_key")
    NAMES_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_KEY_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    snapshot_key: str
    def __init__(self, names: _Optional[_Iterable[str]] = ..., snapshot_key: _Optional[str] = ...) -> None: ...

class Chunk(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class ImportOptions(_message.Message):
    __slots__ = ("format", "name", "platform")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    format: str
    name: str
    platform: str
    def __init__(self, format: _Optional[str] = ..., name: _Optional[str] = ..., platform: _Optional[str] = ...) -> None: ...

class ImportRequest(_message.Message):
    __slots__ = ("options", "data")
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    options: ImportOptions
    data: bytes
    def __init__(self, options: _Optional[_Union[ImportOptions, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("id", "status", "current", "total", "detail", "images", "digest")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    id: str
    status: str
    current: int
    total: int
    detail: str
    images: _containers.RepeatedCompositeFieldContainer[_images_pb2.Image]
    digest: str
    def __init__(self, id: _Optional[str] = ..., status: _Optional[str] = ..., current: _Optional[int] = ..., total: _Optional[int] = ..., detail: _Optional[str] = ..., images: _Optional[_Iterable[_Union[_images_pb2.Image, _Mapping]]] = ..., digest: _Optional[str] = ...) -> None: ...
