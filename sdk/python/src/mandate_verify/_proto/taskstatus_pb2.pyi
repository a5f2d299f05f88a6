from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class WatchRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TaskStatusSnapshot(_message.Message):
    __slots__ = ("closed_task_ids", "sequence", "as_of_unix_ms")
    CLOSED_TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    AS_OF_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    closed_task_ids: _containers.RepeatedScalarFieldContainer[str]
    sequence: int
    as_of_unix_ms: int
    def __init__(self, closed_task_ids: _Optional[_Iterable[str]] = ..., sequence: _Optional[int] = ..., as_of_unix_ms: _Optional[int] = ...) -> None: ...
