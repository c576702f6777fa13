"""Templates and signatures: from the configuration (approved by definition) and from the API
(waiting for an operator unless the configuration approves them automatically).

The registry is kept in memory for the hot path and written through to the store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import cached_property

from gateway.config import AppConfig, TemplateConfig
from gateway.store import APPROVED, PENDING, REFUSED

from .errors import ApiError
from .ids import parse_id

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
KINDS = {"code": 1, "notification": 2, "marketing": 3}        # JSMS numbering
FIRST_API_TEMPLATE = 1001


@dataclass(frozen=True)
class Template:
    id: int
    app: str                 # "" : every app may use it
    type: str                # code | notification | marketing
    content: str
    signature: str
    status: int = APPROVED
    code_length: int = 0
    ttl: float = 0
    channel: str = ""
    from_config: bool = True

    @cached_property
    def placeholders(self) -> list[str]:
        return PLACEHOLDER.findall(self.content)

    @cached_property
    def pieces(self) -> tuple[tuple[tuple[str, str, str], ...], str]:
        """The content cut at its placeholders, to render it without a regular expression:
        ((the text before, the name, the placeholder as written) for each placeholder, the
        text after the last). Worked out once per template, and kept on it."""
        marks, start = [], 0
        for match in PLACEHOLDER.finditer(self.content):
            marks.append((self.content[start:match.start()], match.group(1), match.group(0)))
            start = match.end()
        return tuple(marks), self.content[start:]


@dataclass(frozen=True)
class Signature:
    """A signature made through the API; ``type`` (JSMS's 1-7: company, website, app, public
    account, shop, trademark, other) and ``remark`` (how it is used) as the app gave them for
    its review, None when it gave none."""

    id: int
    app: str
    sign: str
    status: int
    type: int | None = None
    remark: str | None = None


class Registry:
    """Templates by id and signatures by id, with what each app may use."""

    def __init__(self, templates: dict[int, TemplateConfig]) -> None:
        self.templates: dict[int, Template] = {
            t.id: Template(t.id, t.app, t.type, t.content, t.signature, APPROVED, t.code_length,
                           t.ttl, t.channel) for t in templates.values()}
        self.signatures: dict[int, Signature] = {}

    def load(self, stored_templates: list[dict], stored_signatures: list[dict]) -> None:
        for row in stored_templates:
            self.templates[row["id"]] = Template(from_config=False, **row)
        for row in stored_signatures:
            self.signatures[row["id"]] = Signature(**row)

    @property
    def next_template_id(self) -> int:
        return max([FIRST_API_TEMPLATE - 1, *self.templates]) + 1

    def template(self, app: AppConfig, temp_id, kinds: tuple[str, ...]) -> Template:
        """The template ``temp_id`` for ``app``; ApiError 50005 (missing), 50013 (not a
        template of this app), 50020 (waiting for review), 50021 (refused), 50025 (a type
        this endpoint does not send)."""
        if temp_id is None or temp_id == "":
            raise ApiError(50005)
        template = self.templates.get(parse_id(temp_id, 50013))
        if template is None or (template.app and template.app != app.name):
            raise ApiError(50013)
        if template.status == PENDING:
            raise ApiError(50020)
        if template.status == REFUSED:
            raise ApiError(50021)
        if template.type not in kinds:
            raise ApiError(50025, f"a {template.type} template")
        return template

    def signature_text(self, app: AppConfig, template: Template) -> str:
        """The approved signature to put in front: the template's, else the app's; a
        signature made through the API counts only once approved."""
        text = template.signature or app.signature
        if not text:
            return ""
        made = [s for s in self.signatures.values() if s.sign == text and s.app == app.name]
        if made and not any(s.status == APPROVED for s in made):
            raise ApiError(50020, f"signature {text!r} is not approved yet")
        return text

    def set_template(self, template: Template) -> None:
        self.templates[template.id] = template

    def drop_template(self, template_id: int) -> None:
        self.templates.pop(template_id, None)

    def set_signature(self, signature: Signature) -> None:
        self.signatures[signature.id] = signature

    def drop_signature(self, sign_id: int) -> None:
        self.signatures.pop(sign_id, None)

    def signature_in_use(self, signature: Signature) -> bool:
        """A template of the app (or any app's shared one) uses this signature's text."""
        return any(t.signature == signature.sign and t.app in ("", signature.app)
                   for t in self.templates.values())

    def with_status(self, template_id: int, status: int) -> Template:
        template = replace(self.templates[template_id], status=status)
        self.templates[template_id] = template
        return template
