"""Offline, strict validation of Kubernetes objects against the API schemas.

The schemas come from ``ci/fetch-k8s-schemas.sh``, which stores, per
Kubernetes version, the upstream ``api/openapi-spec/swagger.json`` (OpenAPI v2,
every built-in kind) and, once, the CRD manifests of the Gateway API and of the
prometheus-operator monitoring kinds (their ``openAPIV3Schema``) under
``${SAGA_STACK_CACHE:-~/.cache/saga-stack}/k8s-openapi/``.

Validation is as strict as ``kubeconform -strict``:

* an unknown field is an error: every object schema that lists ``properties``
  and says nothing about ``additionalProperties`` gets
  ``additionalProperties: false`` (not where the schema preserves unknown
  fields, nor inside ``allOf``/``anyOf``/``oneOf``/``not`` branches);
* ``required`` is enforced;
* ``null`` is accepted for an optional field (the API server treats it as
  absent, e.g. ``metadata.creationTimestamp: null`` from ``helm template``),
  but not for a required one, nor inside lists or maps.

Quirks of the Kubernetes schemas handled here: ``IntOrString``
(``format: int-or-string`` / ``x-kubernetes-int-or-string``) takes an integer
or a string; ``Quantity`` takes a number or a string in Kubernetes quantity
syntax; ``format: byte`` strings must be base64 (a Secret's ``data``);
``format: int32`` integers must fit; ``RawExtension``, ``JSON`` and
``x-kubernetes-preserve-unknown-fields`` take anything; ``nullable: true``
takes ``null``; a CRD's ``metadata`` is checked as a real ``ObjectMeta``.

Not checked (neither does kubeconform): CEL rules (``x-kubernetes-validations``),
string formats other than the above, and the allowed values of built-in enum
fields (the OpenAPI v2 spec lists them only in descriptions; CRD enums are
checked).

Kinds that are neither built in nor among the fetched CRDs raise
:class:`UnknownKind`, so a caller can decide what to do with them.

Usage::

    errors = validate(obj, "v1.37.2")   # [] when valid
    for version in schema_versions(): ...
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft4Validator, ValidationError, validators
from jsonschema.exceptions import best_match
from jsonschema.protocols import Validator as _JsonSchemaValidator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

__all__ = [
    "SchemasMissing",
    "UnknownKind",
    "Validator",
    "crd_dirs",
    "load_validator",
    "missing_schema_files",
    "pinned_versions",
    "schema_errors",
    "schema_root",
    "schema_versions",
    "validate",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
VERSIONS_FILE = REPO_ROOT / "ci" / "versions.sh"
FETCH_SCRIPT = REPO_ROOT / "ci" / "fetch-k8s-schemas.sh"

OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
_JSON_SCHEMA_PROPS = "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps"
# <signed number><suffix>: binary SI (Ki..Ei), decimal SI (n u m "" k M G T P E)
# or a decimal exponent (e3, E-2), as apimachinery's resource.ParseQuantity.
QUANTITY_PATTERN = (
    r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]+)?$"
)
BASE64_PATTERN = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
INT32 = (-(2**31), 2**31 - 1)

# Keywords whose value is a subschema / a list of them / a map of them.
_SUBSCHEMA = ("items", "additionalItems", "not")
_SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf")
_SUBSCHEMA_MAPS = ("properties", "patternProperties", "definitions")
# Kept out of the compiled schemas: only descriptive, and they are most of the bytes.
_DROP = frozenset({"description", "example", "externalDocs", "x-kubernetes-validations", "default"})


class UnknownKind(LookupError):
    """The apiVersion/kind has no schema (neither built in nor a fetched CRD)."""

    def __init__(self, api_version: str, kind: str, version: str) -> None:
        super().__init__(
            f"no schema for apiVersion={api_version!r} kind={kind!r} in Kubernetes {version}"
        )
        self.api_version = api_version
        self.kind = kind
        self.version = version


class SchemasMissing(FileNotFoundError):
    """The schema files are not in the cache: run ci/fetch-k8s-schemas.sh."""


# --------------------------------------------------------------------------
# Where things are


def pinned_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    """KEY=value lines of ci/versions.sh (quotes stripped, comments ignored)."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line.strip())
        if m:
            pins[m.group(1)] = m.group(2).strip().strip("\"'")
    return pins


def schema_versions() -> list[str]:
    """The Kubernetes versions the chart is validated against (K8S_SCHEMA_VERSIONS)."""
    return pinned_versions()["K8S_SCHEMA_VERSIONS"].split()


def schema_root() -> Path:
    cache = os.environ.get("SAGA_STACK_CACHE") or str(Path.home() / ".cache" / "saga-stack")
    return Path(cache) / "k8s-openapi"


def crd_dirs() -> list[Path]:
    """Directories of the pinned CRD sets (as ci/fetch-k8s-schemas.sh lays them out)."""
    pins = pinned_versions()
    root = schema_root() / "crds"
    return [
        root / "gateway-api" / pins["GATEWAY_API_VERSION"],
        root / "prometheus-operator" / pins["PROMETHEUS_OPERATOR_VERSION"],
    ]


def missing_schema_files(versions: Iterable[str] | None = None, *, crds: bool = True) -> list[Path]:
    """What load_validator() would need but the cache lacks ([] when complete)."""
    wanted = [schema_root() / _norm(v) / "swagger.json" for v in versions or schema_versions()]
    if crds:
        wanted += [d / ".complete" for d in crd_dirs()]
    return [p for p in wanted if not p.is_file()]


def _norm(version: str) -> str:
    return version if version.startswith("v") else f"v{version}"


# --------------------------------------------------------------------------
# Schema rewriting


def _strict(schema: Any, *, branch: bool = False) -> Any:
    """A copy of an OpenAPI (v2 or v3) schema, made strict and Draft 4-valid.

    ``branch`` is true inside allOf/anyOf/oneOf/not, where a schema lists only
    some of the properties and must not forbid the others.
    """
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:  # Draft 4 ignores siblings of $ref anyway
        return {"$ref": schema["$ref"]}
    out: dict[str, Any] = {k: v for k, v in schema.items() if k not in _DROP}

    if out.get("format") == "int-or-string" or out.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
        out.pop("anyOf", None)  # CRDs spell it anyOf [integer, string] too
    elif out.get("format") == "byte" and out.get("type") == "string":
        out.setdefault("pattern", BASE64_PATTERN)
    elif out.get("format") == "int32" and out.get("type") == "integer":
        out.setdefault("minimum", INT32[0])
        out.setdefault("maximum", INT32[1])
    if out.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if "pattern" in out:
        try:
            re.compile(out["pattern"])
        except re.error:  # an RE2-only construct: skip that check rather than crash
            del out["pattern"]

    for key in _SUBSCHEMA:
        if isinstance(out.get(key), dict):
            out[key] = _strict(out[key], branch=branch or key == "not")
        elif isinstance(out.get(key), list):  # tuple-form items
            out[key] = [_strict(s, branch=branch) for s in out[key]]
    for key in _SUBSCHEMA_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [_strict(s, branch=True) for s in out[key]]
    for key in _SUBSCHEMA_MAPS:
        if isinstance(out.get(key), dict):
            out[key] = {name: _strict(s, branch=branch) for name, s in out[key].items()}
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = _strict(out["additionalProperties"], branch=branch)

    preserve = bool(out.get("x-kubernetes-preserve-unknown-fields"))
    if out.get("x-kubernetes-embedded-resource") and "properties" in out:
        props = out["properties"]
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props.setdefault("metadata", {"type": "object"})
    if "properties" in out and "additionalProperties" not in out and not preserve and not branch:
        out["additionalProperties"] = False
    return out


def _builtin_definitions(swagger: Mapping[str, Any]) -> dict[str, Any]:
    defs = {name: _strict(schema) for name, schema in swagger["definitions"].items()}
    if QUANTITY in defs:
        defs[QUANTITY] = {"type": ["string", "number"], "pattern": QUANTITY_PATTERN}
    # The spec leaves these untyped (anything goes); spell out what they take, so
    # a CRD manifest's schema is checked below `items` and `additionalProperties`.
    props = {"$ref": f"#/definitions/{_JSON_SCHEMA_PROPS}"}
    either = {
        "OrArray": [props, {"type": "array", "items": props}],
        "OrBool": [props, {"type": "boolean"}],
        "OrStringArray": [props, {"type": "array", "items": {"type": "string"}}],
    }
    for suffix, choices in either.items():
        if _JSON_SCHEMA_PROPS + suffix in defs:
            defs[_JSON_SCHEMA_PROPS + suffix] = {"anyOf": choices}
    return defs


def _gvk_index(swagger: Mapping[str, Any]) -> dict[tuple[str, str], str]:
    index: dict[tuple[str, str], str] = {}
    for name, schema in swagger["definitions"].items():
        for gvk in schema.get("x-kubernetes-group-version-kind", ()):
            group, version, kind = gvk.get("group", ""), gvk["version"], gvk["kind"]
            api_version = f"{group}/{version}" if group else version
            index.setdefault((api_version, kind), name)
    return index


@functools.cache
def _crd_documents(directory: Path) -> tuple[Mapping[str, Any], ...]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    docs: list[Mapping[str, Any]] = []
    for path in sorted(directory.glob("*.yaml")):
        for doc in yaml.load_all(path.read_text(), Loader=loader):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                docs.append(doc)
    return tuple(docs)


def _crd_schemas(builtin_uri: str, crds: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], Any]:
    """(apiVersion, kind) -> strict schema, for every served version of every CRD."""
    schemas: dict[tuple[str, str], Any] = {}
    meta_ref = {"$ref": f"{builtin_uri}#/definitions/{OBJECT_META}"}
    for crd in crds:
        spec = crd["spec"]
        for ver in spec.get("versions", ()):
            raw = (ver.get("schema") or {}).get("openAPIV3Schema")
            if not ver.get("served", True) or not isinstance(raw, dict):
                continue
            schema = _strict(raw)
            props = schema.setdefault("properties", {})
            props["apiVersion"] = {"type": "string"}
            props["kind"] = {"type": "string"}
            props["metadata"] = meta_ref
            if not raw.get("x-kubernetes-preserve-unknown-fields"):
                schema["additionalProperties"] = False
            schemas[(f"{spec['group']}/{ver['name']}", spec["names"]["kind"])] = schema
    return schemas


# --------------------------------------------------------------------------
# The jsonschema validator class: Draft 4 (what OpenAPI v2/v3.0 schemas are),
# with Kubernetes' null handling and error messages that name the field.


def _properties(
    validator: Any,
    properties: Mapping[str, Any],
    instance: Any,
    schema: Mapping[str, Any],
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    required = schema.get("required", ())
    for name, subschema in properties.items():
        if name in instance:
            value = instance[name]
            if value is None and name not in required:
                continue  # optional field set to null: the API server drops it
            yield from validator.descend(value, subschema, path=name, schema_path=name)


def _additional_properties(
    validator: Any, ap: Any, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    known = schema.get("properties", {})
    patterns = [re.compile(p) for p in schema.get("patternProperties", {})]
    extras = [k for k in instance if k not in known and not any(p.search(k) for p in patterns)]
    if isinstance(ap, dict):
        for extra in extras:
            yield from validator.descend(instance[extra], ap, path=extra)
    elif ap is False:
        for extra in sorted(extras, key=str):
            yield ValidationError(f"unknown field {json.dumps(extra)}", path=(extra,))


def _required(
    validator: Any, required: Iterable[str], instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for name in required:
        if name not in instance:
            yield ValidationError(f"missing required field {json.dumps(name)}")


_K8sDraft4: type[_JsonSchemaValidator] = validators.extend(
    Draft4Validator,
    {
        "properties": _properties,
        "additionalProperties": _additional_properties,
        "required": _required,
    },
)


def _expand(errors: Iterable[ValidationError]) -> Iterator[ValidationError]:
    """Errors, with an anyOf/oneOf failure replaced by the errors of the one
    alternative whose type matched (e.g. JSONSchemaPropsOrArray given an
    object), which name the real culprit."""
    for error in errors:
        if error.validator in ("anyOf", "oneOf") and error.context:
            branches: dict[Any, list[ValidationError]] = {}
            for sub in error.context:
                branches.setdefault(sub.schema_path[0], []).append(sub)
            typed = [
                subs
                for subs in branches.values()
                if not any(e.validator == "type" and not e.relative_path for e in subs)
            ]
            if len(typed) == 1:
                yield from _expand(typed[0])
                continue
        yield error


def _path(parts: Iterable[str | int]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_$][A-Za-z0-9_$-]*", part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out or "<root>"


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_PATTERN_NAMES = {
    QUANTITY_PATTERN: "is not a Kubernetes quantity (e.g. 500m, 1.5, 256Mi, 1Gi)",
    BASE64_PATTERN: "is not base64 (format: byte; use stringData or b64enc)",
}
_JSON_TYPE = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
}


def _message(error: ValidationError) -> str:
    if error.validator == "type":
        want = error.validator_value
        want_text = " or ".join(want) if isinstance(want, list) else str(want)
        got = (
            "null"
            if error.instance is None
            else _JSON_TYPE.get(type(error.instance), type(error.instance).__name__)
        )
        return f"expected {want_text}, got {got} {_short(error.instance)}"
    if error.validator == "enum":
        return f"{_short(error.instance)} is not one of {_short(error.validator_value, 200)}"
    if error.validator == "pattern":
        what = _PATTERN_NAMES.get(
            error.validator_value, f"does not match {error.validator_value!r}"
        )
        return f"{_short(error.instance)} {what}"
    if error.validator in ("anyOf", "oneOf") and error.context:
        inner = best_match(error.context)
        where = _path(list(inner.relative_path))
        closest = f"{where}: {_message(inner)}"
        return f"matches none of the allowed forms ({error.validator}); closest: {closest}"
    if error.validator in (
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
    ):
        return f"{_short(error.instance)} violates {error.validator}={error.validator_value}"
    text = str(error.message)
    return text if len(text) <= 300 else text[:297] + "..."


# --------------------------------------------------------------------------
# Public API


class Validator:
    """The compiled schemas of one Kubernetes version (built-ins + fetched CRDs)."""

    def __init__(
        self,
        version: str,
        swagger: Mapping[str, Any],
        crds: Iterable[Mapping[str, Any]] = (),
    ) -> None:
        self.version = version
        builtin_uri = f"urn:saga-stack:k8s:{version}"
        builtin = {"definitions": _builtin_definitions(swagger)}
        resources: list[tuple[str, Resource[Any]]] = [
            (builtin_uri, DRAFT4.create_resource(builtin))
        ]
        self._refs: dict[tuple[str, str], str] = {
            key: f"{builtin_uri}#/definitions/{name}" for key, name in _gvk_index(swagger).items()
        }
        self.builtin_kinds = frozenset(self._refs)
        for key, schema in _crd_schemas(builtin_uri, crds).items():
            if key in self._refs:  # a built-in kind wins over a CRD of the same name
                continue
            uri = f"urn:saga-stack:crd:{key[0]}:{key[1]}"
            resources.append((uri, DRAFT4.create_resource(schema)))
            self._refs[key] = uri
        self.crd_kinds = frozenset(self._refs) - self.builtin_kinds
        self._registry: Registry[Any] = Registry().with_resources(resources).crawl()
        self._compiled: dict[tuple[str, str], _JsonSchemaValidator] = {}

    def knows(self, api_version: str, kind: str) -> bool:
        return (api_version, kind) in self._refs

    def _for(self, api_version: str, kind: str) -> _JsonSchemaValidator:
        key = (api_version, kind)
        compiled = self._compiled.get(key)
        if compiled is None:
            if key not in self._refs:
                raise UnknownKind(api_version, kind, self.version)
            compiled = _K8sDraft4({"$ref": self._refs[key]}, registry=self._registry)
            self._compiled[key] = compiled
        return compiled

    def iter_errors(self, obj: Any) -> Iterator[ValidationError]:
        """Raw jsonschema errors (raises UnknownKind)."""
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        yield from self._for(str(api_version), str(kind)).iter_errors(obj)

    def validate(self, obj: Any) -> list[str]:
        """Human-readable errors ("<path>: <message>"), [] when valid; raises UnknownKind."""
        if not isinstance(obj, dict):
            return [f"<root>: expected a Kubernetes object (mapping), got {_short(obj)}"]
        problems = [
            f"{f}: missing or not a string"
            for f in ("apiVersion", "kind")
            if not isinstance(obj.get(f), str)
        ]
        if problems:
            return problems
        seen: dict[str, None] = {}
        for error in _expand(self.iter_errors(obj)):
            seen.setdefault(f"{_path(list(error.absolute_path))}: {_message(error)}")
        return sorted(seen)


def _load_swagger(version: str) -> Mapping[str, Any]:
    path = schema_root() / version / "swagger.json"
    if not path.is_file():
        raise SchemasMissing(f"{path} is missing: run {FETCH_SCRIPT.relative_to(REPO_ROOT)}")
    with path.open("rb") as fh:
        swagger: Mapping[str, Any] = json.load(fh)
    return swagger


@functools.cache
def _load_validator(version: str, crds: bool) -> Validator:
    documents: list[Mapping[str, Any]] = []
    if crds:
        for directory in crd_dirs():
            if not (directory / ".complete").is_file():
                raise SchemasMissing(
                    f"{directory} is incomplete: run {FETCH_SCRIPT.relative_to(REPO_ROOT)}"
                )
            documents.extend(_crd_documents(directory))
    return Validator(version, _load_swagger(version), documents)


def load_validator(version: str, *, crds: bool = True) -> Validator:
    """The (cached) validator of one Kubernetes version, e.g. "v1.37.2".

    Raises SchemasMissing when the cache lacks the files.
    """
    return _load_validator(_norm(version), crds)


def validate(obj: dict[str, Any], version: str) -> list[str]:
    """Errors of one object against one Kubernetes version; raises UnknownKind."""
    return load_validator(version).validate(obj)


def schema_errors(objects: Iterable[Mapping[str, Any]], versions: Iterable[str]) -> list[str]:
    """Every problem of every object against every version, as "<version> <Kind>/<name>: ..."
    (a kind with no schema is a problem too)."""
    errors: list[str] = []
    for version in versions:
        validator = load_validator(version)
        for obj in objects:
            label = f"{obj['kind']}/{obj['metadata']['name']}"
            try:
                problems = validator.validate(obj)
            except UnknownKind as exc:
                problems = [f"no schema for {exc}"]
            errors += [f"{version} {label}: {p}" for p in problems]
    return errors
