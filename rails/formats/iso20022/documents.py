"""Documents: parse, locate elements, detect the message, validate against the shipped XSDs
(``SCHEMAS``, in ``xsd/``) and build (``_Builder``), for every ISO 20022 family module."""

from __future__ import annotations

import copy
import re
from functools import cache
from pathlib import Path
from typing import Any

import xmlschema
from lxml import etree

from rails.formats.errors import FormatError

XSD_DIR = Path(__file__).resolve().parent / "xsd"
ISO_NS = "urn:iso:std:iso:20022:tech:xsd:"
SIX_NS = "http://www.six-interbank-clearing.com/de/"

# Message versions we ship an XSD for (rails/formats/iso20022/xsd/<name>.xsd).
SCHEMAS: frozenset[str] = frozenset(
    {
        "camt.053.001.02",
        "camt.053.001.08",
        "camt.054.001.02",
        "camt.054.001.08",
        "pacs.002.001.10",
        "pacs.008.001.08",
        "pain.001.001.03",
        "pain.001.001.09",
        "pain.002.001.10",
        "pain.002.001.11",
        "sese.023.001.11",
        "sese.025.001.11",
    }
)

_MESSAGE_RE = re.compile(r"[a-z]{4}\.\d{3}\.\d{3}\.\d{2}")
_SIX_RE = re.compile(re.escape(SIX_NS) + r"([a-z]{4}\.\d{3}\.\d{3}\.\d{2})\.ch\.(\d{2})\.xsd")


# --------------------------------------------------------------------------------------------
# XML plumbing


def _parse_xml(xml: bytes | str) -> Any:
    """Parse untrusted XML: no DTD, no entities, no network."""
    if isinstance(xml, str):
        xml = xml.encode("utf-8")
    if not isinstance(xml, bytes | bytearray):
        raise FormatError(f"expected XML as bytes, got {type(xml).__name__}")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        root = etree.fromstring(bytes(xml), parser)
    except etree.XMLSyntaxError as exc:
        raise FormatError(f"not well-formed XML: {exc.msg}", line=exc.lineno) from exc
    if root is None:
        raise FormatError("empty XML document")
    if root.getroottree().docinfo.doctype:
        raise FormatError("DOCTYPE declarations are not accepted", line=1)
    return root


def _local(el: Any) -> str:
    return etree.QName(el).localname


def _is_element(node: Any) -> bool:
    return isinstance(node.tag, str)


def _path(el: Any) -> str:
    """Element path by local names, with [n] where siblings share a name: /Document/A/B[2]."""
    parts: list[str] = []
    while el is not None:
        name = _local(el)
        parent = el.getparent()
        if parent is not None:
            same = [child for child in parent if _is_element(child) and _local(child) == name]
            if len(same) > 1:
                name += f"[{same.index(el) + 1}]"
        parts.append(name)
        el = parent
    return "/" + "/".join(reversed(parts))


def _xpath(path: str) -> str:
    return "/".join(f"{{*}}{part}" for part in path.split("/"))


def _find(el: Any, path: str) -> Any:
    return el.find(_xpath(path))


def _findall(el: Any, path: str) -> list[Any]:
    return el.findall(_xpath(path))


def _text(el: Any, path: str) -> str:
    found = _find(el, path)
    if found is None or found.text is None:
        return ""
    return found.text.strip()


def _require(el: Any, path: str) -> Any:
    found = _find(el, path)
    if found is None:
        raise FormatError(f"missing mandatory element {path}", path=_path(el), line=el.sourceline)
    return found


def _require_text(el: Any, path: str) -> str:
    found = _require(el, path)
    text = (found.text or "").strip()
    if not text:
        raise FormatError("empty mandatory element", path=_path(found), line=found.sourceline)
    return text


def _document(root: Any) -> Any:
    """The Document element: the root itself, or the one Document child of a wrapper (AppHdr)."""
    if _local(root) == "Document":
        return root
    documents = [child for child in root if _is_element(child) and _local(child) == "Document"]
    if len(documents) != 1:
        raise FormatError("no ISO 20022 Document element", path=_path(root), line=root.sourceline)
    document = documents[0]
    header = next((child for child in root if _is_element(child) and _local(child) == "AppHdr"), None)
    if header is not None:
        declared = _text(header, "MsgDefIdr")
        actual = _message_of(document)
        if declared and declared != actual:
            raise FormatError(
                f"AppHdr declares {declared} but the Document is {actual}",
                path=_path(_find(header, "MsgDefIdr")),
                line=header.sourceline,
            )
    return document


def _message_of(document: Any) -> str:
    namespace = etree.QName(document).namespace
    if not namespace:
        raise FormatError(
            "Document has no namespace, so its message type and version are unknown",
            path=_path(document),
            line=document.sourceline,
        )
    if namespace.startswith(ISO_NS) and _MESSAGE_RE.fullmatch(namespace[len(ISO_NS) :]):
        return namespace[len(ISO_NS) :]
    six = _SIX_RE.fullmatch(namespace)
    if six:
        return f"{six.group(1)}.ch.{six.group(2)}"
    raise FormatError(f"unknown message namespace {namespace!r}", path=_path(document), line=document.sourceline)


def _base_message(message: str) -> str:
    """pain.001.001.03.ch.02 -> pain.001.001.03; an ISO message id is returned as is."""
    return message[:15]


def detect(xml: bytes) -> str:
    """The message id (e.g. ``camt.053.001.08``) from the Document's namespace.

    The SIX Swiss variants come back with their suffix, e.g. ``pain.001.001.03.ch.02``.
    """
    return _message_of(_document(_parse_xml(xml)))


@cache
def _schema(name: str) -> xmlschema.XMLSchema:
    if name not in SCHEMAS:
        raise FormatError(f"no XSD for {name}; schemas available: {', '.join(sorted(SCHEMAS))}")
    return xmlschema.XMLSchema(str(XSD_DIR / f"{name}.xsd"))


@cache
def _fast_schema(name: str) -> etree.XMLSchema:
    """libxml2's validator for the same XSD: ~40x faster than xmlschema, so valid messages (the
    hot path: every message built or received) are checked with it, and xmlschema is asked only
    to explain an invalid one."""
    _schema(name)  # same "no XSD" error
    return etree.XMLSchema(etree.parse(str(XSD_DIR / f"{name}.xsd")))


def _strip_namespaces(text: str) -> str:
    return re.sub(r"\{[^}]*\}", "", text)


def _validate_document(document: Any, schema: str) -> None:
    message = _message_of(document)
    target = document
    if message != schema:
        if _base_message(message) != schema:
            raise FormatError(f"document is {message}, not {schema}", path=_path(document), line=document.sourceline)
        # A SIX Swiss variant: same structure as the ISO version, validate it under the ISO namespace.
        target = copy.deepcopy(document)
        iso = ISO_NS + schema
        for el in target.iter():
            if _is_element(el):
                el.tag = f"{{{iso}}}{_local(el)}"
    if _fast_schema(schema).validate(target):
        return
    # Invalid: ask xmlschema for the first error, with the element path and line it names.
    error = next(iter(_schema(schema).iter_errors(target)), None)
    if error is None:  # the two validators disagree: trust the stricter one and say what libxml2 saw
        last = _fast_schema(schema).error_log.last_error
        raise FormatError(f"invalid {schema}: {last.message}", path=last.path or "", line=last.line)
    if error is not None:
        raise FormatError(
            f"invalid {schema}: {_strip_namespaces(error.reason or str(error))}",
            path=error.path or "",
            line=error.sourceline,
        )


def validate(xml: bytes, schema: str) -> None:
    """Validate ``xml`` against the XSD of ``schema`` (e.g. "pain.001.001.03"); raise FormatError."""
    _validate_document(_document(_parse_xml(xml)), schema)


def _load(xml: bytes, *families: str, readable: set[str] | None = None) -> tuple[Any, str]:
    """Parse, locate the Document, check its message family and validate when we ship its XSD.

    ``readable`` limits the versions accepted without an XSD (None: any version of the family).
    """
    document = _document(_parse_xml(xml))
    message = _message_of(document)
    base = _base_message(message)
    family = base[:8]
    if family not in families:
        raise FormatError(
            f"expected {' or '.join(families)}, got {message}", path=_path(document), line=document.sourceline
        )
    if base in SCHEMAS:
        _validate_document(document, base)
    elif readable is not None and base not in readable:
        supported = sorted({*readable, *(s for s in SCHEMAS if s.startswith(family))})
        raise FormatError(
            f"{message} is not supported (readable versions: {', '.join(supported)})",
            path=_path(document),
            line=document.sourceline,
        )
    return document, base


class _Builder:
    """Namespaced element builder for one Document."""

    def __init__(self, message: str) -> None:
        self.message = message
        self.namespace = ISO_NS + message
        self.root = etree.Element(self._tag("Document"), nsmap={None: self.namespace})

    def _tag(self, name: str) -> str:
        return f"{{{self.namespace}}}{name}"

    def add(self, parent: Any, path: str, text: str | None = None, **attrib: str) -> Any:
        el = parent
        for part in path.split("/"):
            el = etree.SubElement(el, self._tag(part))
        try:
            if text is not None:
                el.text = text
            for key, value in attrib.items():
                el.set(key, value)
        except ValueError as exc:  # lxml refuses control characters and other non-XML text
            raise FormatError(f"{path}: {exc}") from exc
        return el

    def to_bytes(self) -> bytes:
        return etree.tostring(self.root, xml_declaration=True, encoding="UTF-8", pretty_print=True)

    def finish(self) -> bytes:
        out = self.to_bytes()
        validate(out, self.message)
        return out
