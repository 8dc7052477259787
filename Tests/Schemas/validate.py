#!/usr/bin/env python3
"""Validates Kubernetes manifests offline, as strictly as an API server would take them.

    Tests/Schemas/.venv/bin/python Tests/Schemas/validate.py [--kubernetes-version 1.33] FILE...

FILE is multi-document YAML (`-` reads stdin). Each document that is not empty:
  * keda.sh/v1alpha1 ScaledObject / TriggerAuthentication: the openAPIV3Schema of KEDA's CRD, vendored
    in keda/ (see keda/README.md), checked with jsonschema. Objects with `properties` and no
    `additionalProperties` are closed (unless x-kubernetes-preserve-unknown-fields), so a misspelt field
    fails here the way `kubectl apply --validate=strict` fails on it, not pruned in silence; metadata is
    checked against the Kubernetes ObjectMeta; the CRD's CEL rules are checked by hand (an unknown rule
    stops the run: see CEL_RULES).
  * anything else: kubernetes_validate.validate(doc, version, strict=True), i.e. the real schemas of
    that Kubernetes version with unknown fields rejected. An unknown apiVersion/kind is a problem.
  * every document needs metadata.name, and a mapping may not repeat a key.

One line per problem: `doc N (Kind/name): $.json.path: message`, N counting a file's documents from 1
(empty ones too; with several files the line starts with the file's name). Exit 1 on any problem (a file
that is not YAML, no documents at all, or a Kubernetes version kubernetes-validate has no schemas for,
too), 2 on bad usage; 0 and `ok: N documents` otherwise.
"""

import argparse
import json
import os
import re
import sys

import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate import utils as kv_utils
from referencing import Registry, Resource

HERE = os.path.dirname(os.path.abspath(__file__))
KEDA_CRDS = {
    "ScaledObject": os.path.join(HERE, "keda", "keda.sh_scaledobjects.yaml"),
    "TriggerAuthentication": os.path.join(HERE, "keda", "keda.sh_triggerauthentications.yaml"),
}
KEDA_GROUP = "keda.sh"
DEFINITIONS_ID = "https://kubernetes.io/api/_definitions.json"
OBJECT_META = DEFINITIONS_ID + "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


# --- YAML: what `kubectl apply` would read ----------------------------------------------------------


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key repeated in one mapping (the API server's strict decoding does)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, "found duplicate key %r" % (key,), key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _value_scalar(loader, node):
    # A plain `=` is YAML 1.1's "value" tag, which PyYAML does not construct (yaml/pyyaml#89).
    return str(node.value)


StrictLoader.add_constructor("tag:yaml.org,2002:value", _value_scalar)
# An unquoted 2026-01-02 stays a string, as sigs.k8s.io/yaml (go-yaml) reads it, not a datetime.
StrictLoader.add_constructor("tag:yaml.org,2002:timestamp", _value_scalar)


def read_documents(path):
    text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    return list(yaml.load_all(text, Loader=StrictLoader))


# --- problems ---------------------------------------------------------------------------------------


def json_path(parts):
    out = "$"
    for p in parts:
        out += "[%d]" % p if isinstance(p, int) else ("." + p if _plain(p) else "[%s]" % json.dumps(p))
    return out


def _plain(key):
    return isinstance(key, str) and key != "" and all(c.isalnum() or c in "_-" for c in key)


def error_lines(errors):
    """(path, message) for each jsonschema error; an unexpected property is named in its own path."""
    out = []
    for e in errors:
        parts = list(e.absolute_path)
        if e.validator == "additionalProperties" and e.validator_value is False and isinstance(e.instance, dict):
            known = set(e.schema.get("properties", {}))
            extra = [k for k in e.instance if k not in known]
            if extra:
                out += [(json_path(parts + [k]), "unknown field %s" % json.dumps(k)) for k in extra]
                continue
        if e.validator in ("oneOf", "anyOf") and e.context:
            # Say which alternatives failed (IntOrString and the like) rather than only "not valid under any".
            why = "; ".join(sorted({c.message for c in e.context}))
            out.append((json_path(parts), "%s (%s)" % (e.message, why)))
            continue
        out.append((json_path(parts), e.message))
    return sorted(set(out))


# --- Kubernetes' own kinds ----------------------------------------------------------------------------


def kubernetes_problems(doc, version):
    try:
        kubernetes_validate.validate(doc, version, strict=True)
        return []
    except kubernetes_validate.ValidationError as first:
        try:
            return error_lines(all_kubernetes_errors(doc, version))
        except Exception:  # the listing of every error leans on kubernetes_validate's internals
            return error_lines([first])
    except kv_utils.SchemaNotFoundError as e:
        return [("$", "unknown apiVersion/kind: " + e.message)]


def schema_version(version):
    """The newest Kubernetes version kubernetes-validate has a schema for that is not newer than `version`."""
    want = tuple(int(x) for x in kv_utils.major_minor(version.lstrip("v")).split("."))
    have = [v for v in kv_utils.all_versions() if tuple(int(x) for x in kv_utils.major_minor(v).split(".")) <= want]
    if not have or want > tuple(int(x) for x in kv_utils.major_minor(kv_utils.latest_version()).split(".")):
        raise SystemExit("validate.py: kubernetes-validate %s has no schemas for Kubernetes %s" % (kubernetes_validate.__version__, version))
    return have[-1]


def definitions(version):
    d = "kubernetes-json-schema/v%s-local-strict" % schema_version(version)
    return kv_utils.schema_contents(d + "/_definitions.json", version)


def all_kubernetes_errors(doc, version):
    """Every error, where kubernetes_validate.validate raises only the first: its schema, the same way."""
    d = "kubernetes-json-schema/v%s-local-strict" % schema_version(version)
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", doc["apiVersion"])
    schema = kv_utils.schema_contents("%s/%s-%s.json" % (d, doc["kind"].lower(), group), version)
    registry = Resource.from_contents(schema) @ Registry()
    registry = Resource.from_contents(kv_utils.schema_contents(d + "/_definitions.json", version)) @ registry
    return list(jsonschema.Draft202012Validator(schema, registry=registry).iter_errors(doc))


# --- KEDA's CRDs -----------------------------------------------------------------------------------


def _min_le_max(obj):
    if not isinstance(obj, dict) or "minReplicaCount" not in obj:
        return True
    lo, hi = obj["minReplicaCount"], obj.get("maxReplicaCount", 100)
    return not (isinstance(lo, int) and isinstance(hi, int)) or lo <= hi


# The CEL rules (x-kubernetes-validations) of the vendored CRDs, each written again in Python. A rule not
# in this table stops the run: a new KEDA brings new rules, and they must not go unchecked in silence.
CEL_RULES = {
    "!has(self.minReplicaCount) || self.minReplicaCount <= (has(self.maxReplicaCount) ? self.maxReplicaCount : 100)": _min_le_max,
}


def crd_to_json_schema(node):
    """A CRD's structural OpenAPI v3 schema as a JSON Schema with the API server's strictness."""
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: crd_to_json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not"):
            out[key] = crd_to_json_schema(value)
        elif key in ("anyOf", "allOf", "oneOf"):
            out[key] = [crd_to_json_schema(sub) for sub in value]
        elif key == "x-kubernetes-validations":
            for rule in value:
                if rule["rule"] not in CEL_RULES:
                    raise SystemExit("validate.py: CEL rule not known to CEL_RULES (add it): %s" % rule["rule"])
            out["celRules"] = value
        elif key.startswith("x-kubernetes-") or key in ("nullable", "default", "example", "externalDocs"):
            continue
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    is_object = node.get("type") == "object" or "properties" in node
    if is_object and "additionalProperties" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def _cel_rules(validator, rules, instance, schema):
    for rule in rules:
        if not CEL_RULES[rule["rule"]](instance):
            yield jsonschema.ValidationError(rule.get("message") or "fails the rule " + rule["rule"])


def _int_format(bits):
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return lambda v: not isinstance(v, int) or isinstance(v, bool) or lo <= v <= hi


FORMATS = jsonschema.FormatChecker(formats=())
FORMATS.checks("int32")(_int_format(32))
FORMATS.checks("int64")(_int_format(64))
CRDValidator = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"celRules": _cel_rules})
_crd_validators = {}


def crd_validator(kind, api_version, version):
    key = (kind, api_version)
    if key not in _crd_validators:
        with open(KEDA_CRDS[kind], encoding="utf-8") as f:
            crd = yaml.safe_load(f)
        served = {v["name"]: v for v in crd["spec"]["versions"] if v.get("served")}
        v = served.get(api_version.split("/", 1)[1])
        if v is None:
            _crd_validators[key] = None
        else:
            schema = crd_to_json_schema(v["schema"]["openAPIV3Schema"])
            schema["properties"]["apiVersion"] = {"const": api_version}
            schema["properties"]["kind"] = {"const": kind}
            schema["properties"]["metadata"] = {"$ref": OBJECT_META}
            schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata"})
            registry = Resource.from_contents(definitions(version)) @ Registry()
            _crd_validators[key] = CRDValidator(schema, registry=registry, format_checker=FORMATS)
    return _crd_validators[key]


def keda_problems(doc, version):
    kind, api_version = doc["kind"], doc["apiVersion"]
    validator = crd_validator(kind, api_version, version) if kind in KEDA_CRDS else None
    if validator is None:
        return [("$", "unknown apiVersion/kind: %s %s (KEDA's vendored CRDs serve %s)" % (api_version, kind, ", ".join(sorted(KEDA_CRDS))))]
    return error_lines(validator.iter_errors(doc))


# --- main ----------------------------------------------------------------------------------------------


def document_problems(doc, version):
    if not isinstance(doc, dict):
        return [("$", "not a mapping but a %s" % type(doc).__name__)]
    missing = [k for k in ("apiVersion", "kind") if not isinstance(doc.get(k), str) or not doc.get(k)]
    if missing:
        return [("$." + k, "missing (or not a string)") for k in missing]
    problems = []
    name = (doc.get("metadata") or {}).get("name") if isinstance(doc.get("metadata"), dict) else None
    if not isinstance(name, str) or not name:
        problems.append(("$.metadata.name", "missing: every object needs a name"))
    if doc["apiVersion"].split("/", 1)[0] == KEDA_GROUP:
        problems += keda_problems(doc, version)
    else:
        problems += kubernetes_problems(doc, version)
    return problems


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubernetes-version", default="1.33", help="the Kubernetes version whose schemas apply (default 1.33)")
    parser.add_argument("files", nargs="+", metavar="FILE", help="multi-document YAML; - for stdin")
    args = parser.parse_args(argv)
    schema_version(args.kubernetes_version)  # an unsupported version stops here, before any document

    count, failed = 0, False
    for path in args.files:
        try:
            docs = read_documents(path)
        except (OSError, yaml.YAMLError) as e:
            print("%s: cannot read YAML: %s" % (path, e))
            return 1
        for index, doc in enumerate(docs, start=1):
            if doc is None:  # an empty document, or one of comments only
                continue
            count += 1
            problems = document_problems(doc, args.kubernetes_version)
            if problems:
                failed = True
                meta = doc.get("metadata") if isinstance(doc, dict) else None
                kind = doc.get("kind", "?") if isinstance(doc, dict) else "?"
                name = meta.get("name", "?") if isinstance(meta, dict) else "?"
                where = "" if len(args.files) == 1 else path + ": "
                for p, message in problems:
                    print("%sdoc %d (%s/%s): %s: %s" % (where, index, kind, name, p, message))
    if count == 0:
        print("no documents: nothing to validate")
        return 1
    if failed:
        return 1
    print("ok: %d documents" % count)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
