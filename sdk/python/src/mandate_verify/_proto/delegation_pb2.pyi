from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class OpenSubtaskRequest(_message.Message):
    __slots__ = ("delegator_id", "target_id", "purpose", "actions", "value_limit", "deadline_unix", "delegator_task_id")
    DELEGATOR_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    VALUE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_UNIX_FIELD_NUMBER: _ClassVar[int]
    DELEGATOR_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    delegator_id: str
    target_id: str
    purpose: str
    actions: _containers.RepeatedScalarFieldContainer[str]
    value_limit: str
    deadline_unix: int
    delegator_task_id: str
    def __init__(self, delegator_id: _Optional[str] = ..., target_id: _Optional[str] = ..., purpose: _Optional[str] = ..., actions: _Optional[_Iterable[str]] = ..., value_limit: _Optional[str] = ..., deadline_unix: _Optional[int] = ..., delegator_task_id: _Optional[str] = ...) -> None: ...

class CloseSubtaskRequest(_message.Message):
    __slots__ = ("delegator_id", "task_id", "reason")
    DELEGATOR_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    delegator_id: str
    task_id: str
    reason: str
    def __init__(self, delegator_id: _Optional[str] = ..., task_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class Subtask(_message.Message):
    __slots__ = ("task_id", "parent_id", "deadline_unix", "depth")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_ID_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_UNIX_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    parent_id: str
    deadline_unix: int
    depth: int
    def __init__(self, task_id: _Optional[str] = ..., parent_id: _Optional[str] = ..., deadline_unix: _Optional[int] = ..., depth: _Optional[int] = ...) -> None: ...
