from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FeatureKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FEATURE_KIND_UNSPECIFIED: _ClassVar[FeatureKind]
    FEATURE_KIND_STRING: _ClassVar[FeatureKind]
    FEATURE_KIND_INT64: _ClassVar[FeatureKind]
    FEATURE_KIND_FLOAT: _ClassVar[FeatureKind]
    FEATURE_KIND_STRING_LIST: _ClassVar[FeatureKind]
    FEATURE_KIND_INT64_LIST: _ClassVar[FeatureKind]
    FEATURE_KIND_FLOAT_LIST: _ClassVar[FeatureKind]

class AttributeKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ATTRIBUTE_KIND_UNSPECIFIED: _ClassVar[AttributeKind]
    ATTRIBUTE_KIND_CATEGORICAL: _ClassVar[AttributeKind]
    ATTRIBUTE_KIND_MULTI_CATEGORICAL: _ClassVar[AttributeKind]
    ATTRIBUTE_KIND_NUMERIC: _ClassVar[AttributeKind]
FEATURE_KIND_UNSPECIFIED: FeatureKind
FEATURE_KIND_STRING: FeatureKind
FEATURE_KIND_INT64: FeatureKind
FEATURE_KIND_FLOAT: FeatureKind
FEATURE_KIND_STRING_LIST: FeatureKind
FEATURE_KIND_INT64_LIST: FeatureKind
FEATURE_KIND_FLOAT_LIST: FeatureKind
ATTRIBUTE_KIND_UNSPECIFIED: AttributeKind
ATTRIBUTE_KIND_CATEGORICAL: AttributeKind
ATTRIBUTE_KIND_MULTI_CATEGORICAL: AttributeKind
ATTRIBUTE_KIND_NUMERIC: AttributeKind

class StringList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, values: _Optional[_Iterable[str]] = ...) -> None: ...

class Int64List(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, values: _Optional[_Iterable[int]] = ...) -> None: ...

class FloatList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class FeatureValue(_message.Message):
    __slots__ = ("string_value", "int64_value", "float_value", "string_list", "int64_list", "float_list")
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    INT64_VALUE_FIELD_NUMBER: _ClassVar[int]
    FLOAT_VALUE_FIELD_NUMBER: _ClassVar[int]
    STRING_LIST_FIELD_NUMBER: _ClassVar[int]
    INT64_LIST_FIELD_NUMBER: _ClassVar[int]
    FLOAT_LIST_FIELD_NUMBER: _ClassVar[int]
    string_value: str
    int64_value: int
    float_value: float
    string_list: StringList
    int64_list: Int64List
    float_list: FloatList
    def __init__(self, string_value: _Optional[str] = ..., int64_value: _Optional[int] = ..., float_value: _Optional[float] = ..., string_list: _Optional[_Union[StringList, _Mapping]] = ..., int64_list: _Optional[_Union[Int64List, _Mapping]] = ..., float_list: _Optional[_Union[FloatList, _Mapping]] = ...) -> None: ...

class RetrieveCandidatesRequest(_message.Message):
    __slots__ = ("user_id", "user_features", "history_item_ids", "num_candidates", "exclude_item_ids", "exclude_history", "request_id", "display_attributes", "filter", "model_version", "version_label")
    class UserFeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: FeatureValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[FeatureValue, _Mapping]] = ...) -> None: ...
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_FEATURES_FIELD_NUMBER: _ClassVar[int]
    HISTORY_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    NUM_CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_HISTORY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    VERSION_LABEL_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    user_features: _containers.MessageMap[str, FeatureValue]
    history_item_ids: _containers.RepeatedScalarFieldContainer[str]
    num_candidates: int
    exclude_item_ids: _containers.RepeatedScalarFieldContainer[str]
    exclude_history: bool
    request_id: str
    display_attributes: _containers.RepeatedScalarFieldContainer[str]
    filter: ItemFilter
    model_version: int
    version_label: str
    def __init__(self, user_id: _Optional[str] = ..., user_features: _Optional[_Mapping[str, FeatureValue]] = ..., history_item_ids: _Optional[_Iterable[str]] = ..., num_candidates: _Optional[int] = ..., exclude_item_ids: _Optional[_Iterable[str]] = ..., exclude_history: _Optional[bool] = ..., request_id: _Optional[str] = ..., display_attributes: _Optional[_Iterable[str]] = ..., filter: _Optional[_Union[ItemFilter, _Mapping]] = ..., model_version: _Optional[int] = ..., version_label: _Optional[str] = ...) -> None: ...

class CategoricalRestrict(_message.Message):
    __slots__ = ("namespace", "allow", "deny")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    ALLOW_FIELD_NUMBER: _ClassVar[int]
    DENY_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    allow: _containers.RepeatedScalarFieldContainer[str]
    deny: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, namespace: _Optional[str] = ..., allow: _Optional[_Iterable[str]] = ..., deny: _Optional[_Iterable[str]] = ...) -> None: ...

class NumericRestrict(_message.Message):
    __slots__ = ("namespace", "op", "value")
    class Operator(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OPERATOR_UNSPECIFIED: _ClassVar[NumericRestrict.Operator]
        OPERATOR_LESS: _ClassVar[NumericRestrict.Operator]
        OPERATOR_LESS_EQUAL: _ClassVar[NumericRestrict.Operator]
        OPERATOR_EQUAL: _ClassVar[NumericRestrict.Operator]
        OPERATOR_GREATER_EQUAL: _ClassVar[NumericRestrict.Operator]
        OPERATOR_GREATER: _ClassVar[NumericRestrict.Operator]
        OPERATOR_NOT_EQUAL: _ClassVar[NumericRestrict.Operator]
    OPERATOR_UNSPECIFIED: NumericRestrict.Operator
    OPERATOR_LESS: NumericRestrict.Operator
    OPERATOR_LESS_EQUAL: NumericRestrict.Operator
    OPERATOR_EQUAL: NumericRestrict.Operator
    OPERATOR_GREATER_EQUAL: NumericRestrict.Operator
    OPERATOR_GREATER: NumericRestrict.Operator
    OPERATOR_NOT_EQUAL: NumericRestrict.Operator
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    op: NumericRestrict.Operator
    value: float
    def __init__(self, namespace: _Optional[str] = ..., op: _Optional[_Union[NumericRestrict.Operator, str]] = ..., value: _Optional[float] = ...) -> None: ...

class ItemFilter(_message.Message):
    __slots__ = ("categorical", "numeric")
    CATEGORICAL_FIELD_NUMBER: _ClassVar[int]
    NUMERIC_FIELD_NUMBER: _ClassVar[int]
    categorical: _containers.RepeatedCompositeFieldContainer[CategoricalRestrict]
    numeric: _containers.RepeatedCompositeFieldContainer[NumericRestrict]
    def __init__(self, categorical: _Optional[_Iterable[_Union[CategoricalRestrict, _Mapping]]] = ..., numeric: _Optional[_Iterable[_Union[NumericRestrict, _Mapping]]] = ...) -> None: ...

class Candidate(_message.Message):
    __slots__ = ("item_id", "score", "rank", "display")
    class DisplayEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    score: float
    rank: int
    display: _containers.ScalarMap[str, str]
    def __init__(self, item_id: _Optional[str] = ..., score: _Optional[float] = ..., rank: _Optional[int] = ..., display: _Optional[_Mapping[str, str]] = ...) -> None: ...

class RetrieveCandidatesResponse(_message.Message):
    __slots__ = ("candidates", "model_name", "model_version", "truncated", "request_id")
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    candidates: _containers.RepeatedCompositeFieldContainer[Candidate]
    model_name: str
    model_version: str
    truncated: bool
    request_id: str
    def __init__(self, candidates: _Optional[_Iterable[_Union[Candidate, _Mapping]]] = ..., model_name: _Optional[str] = ..., model_version: _Optional[str] = ..., truncated: _Optional[bool] = ..., request_id: _Optional[str] = ...) -> None: ...

class RetrieveCandidatesBatchRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[RetrieveCandidatesRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[RetrieveCandidatesRequest, _Mapping]]] = ...) -> None: ...

class RetrieveCandidatesBatchResponse(_message.Message):
    __slots__ = ("responses",)
    RESPONSES_FIELD_NUMBER: _ClassVar[int]
    responses: _containers.RepeatedCompositeFieldContainer[RetrieveCandidatesResponse]
    def __init__(self, responses: _Optional[_Iterable[_Union[RetrieveCandidatesResponse, _Mapping]]] = ...) -> None: ...

class RetrieveSimilarItemsRequest(_message.Message):
    __slots__ = ("item_ids", "num_candidates", "exclude_item_ids", "request_id", "display_attributes", "filter", "model_version", "version_label")
    ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    NUM_CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    VERSION_LABEL_FIELD_NUMBER: _ClassVar[int]
    item_ids: _containers.RepeatedScalarFieldContainer[str]
    num_candidates: int
    exclude_item_ids: _containers.RepeatedScalarFieldContainer[str]
    request_id: str
    display_attributes: _containers.RepeatedScalarFieldContainer[str]
    filter: ItemFilter
    model_version: int
    version_label: str
    def __init__(self, item_ids: _Optional[_Iterable[str]] = ..., num_candidates: _Optional[int] = ..., exclude_item_ids: _Optional[_Iterable[str]] = ..., request_id: _Optional[str] = ..., display_attributes: _Optional[_Iterable[str]] = ..., filter: _Optional[_Union[ItemFilter, _Mapping]] = ..., model_version: _Optional[int] = ..., version_label: _Optional[str] = ...) -> None: ...

class RetrieveSimilarItemsResponse(_message.Message):
    __slots__ = ("candidates", "model_name", "model_version", "truncated", "request_id")
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    candidates: _containers.RepeatedCompositeFieldContainer[Candidate]
    model_name: str
    model_version: str
    truncated: bool
    request_id: str
    def __init__(self, candidates: _Optional[_Iterable[_Union[Candidate, _Mapping]]] = ..., model_name: _Optional[str] = ..., model_version: _Optional[str] = ..., truncated: _Optional[bool] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetServiceInfoRequest(_message.Message):
    __slots__ = ("model_version", "version_label")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    VERSION_LABEL_FIELD_NUMBER: _ClassVar[int]
    model_version: int
    version_label: str
    def __init__(self, model_version: _Optional[int] = ..., version_label: _Optional[str] = ...) -> None: ...

class FeatureSpec(_message.Message):
    __slots__ = ("name", "kind", "required")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: FeatureKind
    required: bool
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[FeatureKind, str]] = ..., required: _Optional[bool] = ...) -> None: ...

class GetServiceInfoResponse(_message.Message):
    __slots__ = ("model_name", "model_version", "embedding_dim", "item_count", "index_type", "index_device", "query_device", "max_num_candidates", "max_exclusions", "features", "similarity", "bundle_format_version", "max_history_length", "display_attributes", "max_batch_requests", "filterable_attributes", "versions")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_DIM_FIELD_NUMBER: _ClassVar[int]
    ITEM_COUNT_FIELD_NUMBER: _ClassVar[int]
    INDEX_TYPE_FIELD_NUMBER: _ClassVar[int]
    INDEX_DEVICE_FIELD_NUMBER: _ClassVar[int]
    QUERY_DEVICE_FIELD_NUMBER: _ClassVar[int]
    MAX_NUM_CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    MAX_EXCLUSIONS_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_FORMAT_VERSION_FIELD_NUMBER: _ClassVar[int]
    MAX_HISTORY_LENGTH_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    FILTERABLE_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    model_version: str
    embedding_dim: int
    item_count: int
    index_type: str
    index_device: str
    query_device: str
    max_num_candidates: int
    max_exclusions: int
    features: _containers.RepeatedCompositeFieldContainer[FeatureSpec]
    similarity: str
    bundle_format_version: str
    max_history_length: int
    display_attributes: _containers.RepeatedScalarFieldContainer[str]
    max_batch_requests: int
    filterable_attributes: _containers.RepeatedCompositeFieldContainer[FilterableAttribute]
    versions: _containers.RepeatedCompositeFieldContainer[ServedVersion]
    def __init__(self, model_name: _Optional[str] = ..., model_version: _Optional[str] = ..., embedding_dim: _Optional[int] = ..., item_count: _Optional[int] = ..., index_type: _Optional[str] = ..., index_device: _Optional[str] = ..., query_device: _Optional[str] = ..., max_num_candidates: _Optional[int] = ..., max_exclusions: _Optional[int] = ..., features: _Optional[_Iterable[_Union[FeatureSpec, _Mapping]]] = ..., similarity: _Optional[str] = ..., bundle_format_version: _Optional[str] = ..., max_history_length: _Optional[int] = ..., display_attributes: _Optional[_Iterable[str]] = ..., max_batch_requests: _Optional[int] = ..., filterable_attributes: _Optional[_Iterable[_Union[FilterableAttribute, _Mapping]]] = ..., versions: _Optional[_Iterable[_Union[ServedVersion, _Mapping]]] = ...) -> None: ...

class FilterableAttribute(_message.Message):
    __slots__ = ("name", "kind")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: AttributeKind
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[AttributeKind, str]] = ...) -> None: ...

class ServedVersion(_message.Message):
    __slots__ = ("model_version", "labels", "is_default")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    model_version: int
    labels: _containers.RepeatedScalarFieldContainer[str]
    is_default: bool
    def __init__(self, model_version: _Optional[int] = ..., labels: _Optional[_Iterable[str]] = ..., is_default: _Optional[bool] = ...) -> None: ...
