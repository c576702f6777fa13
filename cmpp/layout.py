"""Declarative wire layouts with construct, compiled to one ``struct`` call per fixed-size run.

A CMPP PDU is a long row of fixed-size fields with one or two variable parts. construct's own
compiler emits one ``read`` and one ``unpack`` per field and two ``Container`` objects per
parse, which makes a SUBMIT about six times slower than hand-written ``struct`` code. ``Layout``
is a ``construct.Struct`` whose ``compile()`` emits different code for the same layout: each run
of consecutive fixed-size fields becomes a single ``struct.Struct`` call, and values land in a
plain dict. Its interpreted ``parse``/``build`` are stock construct, and the codec uses them to
name the field when the fast path fails.

Supported members (anything else is refused when the layout is compiled):

* ``FormatField`` (``Int8ub``, ``Int32ub``, ``Int64ub``, ...);
* ``Bytes(n)`` with a constant ``n``, built from exactly ``n`` bytes;
* ``Text(n)``: a fixed octet string of ASCII text, NUL padded on the right;
* ``Rebuild(FormatField, expr)``: a count or length field derived when building and left out
  of the parsed result (``DestUsr_tl``, ``Msg_Length``);
* ``Array(expr, Text(n) | Bytes(n))`` and ``Bytes(expr)``: the variable parts;
* ``Require(expr, reason)``: a rule from the spec, checked when parsing and when building.
"""

from __future__ import annotations

import struct

from construct import (
    Array,
    Renamed,
    Bytes,
    Check,
    CheckError,
    Construct,
    FormatField,
    Rebuild,
    StringError,
    Struct,
    stream_read,
    stream_write,
)
from construct.core import evaluate


def text_from_field(data: bytes) -> str:
    """Decode a fixed octet string: cut at the first NUL (or the field end), ASCII only.

    Raises UnicodeDecodeError for a byte above 0x7F.
    """
    return data.split(b"\0", 1)[0].decode("ascii")


class Text(Construct):
    """A fixed-size CMPP octet string of ASCII text, left aligned and NUL padded (spec §3).

    Parses by cutting at the first NUL or at the field end (a full field has no terminator).
    Building pads with NULs; a value longer than the field or with a non-ASCII character
    raises ``StringError`` before anything is written.
    """

    def __init__(self, length: int) -> None:
        super().__init__()
        self.length = length

    def _parse(self, stream, context, path):
        data = stream_read(stream, self.length, path)
        try:
            return text_from_field(data)
        except UnicodeDecodeError:
            raise StringError(f"non-ASCII byte in a {self.length}-byte text field {data!r}",
                              path=path) from None

    def _build(self, obj, stream, context, path):
        stream_write(stream, encode_text_field(obj, self.length, path), self.length, path)
        return obj

    def _sizeof(self, context, path):
        return self.length


def encode_text_field(value, length: int, path: str = "") -> bytes:
    """Encode ``value`` for a ``length``-byte text field, NUL padded; StringError if it won't fit."""
    if not isinstance(value, str):
        raise StringError(f"expected text, got {type(value).__name__}", path=path)
    try:
        data = value.encode("ascii")
    except UnicodeEncodeError:
        raise StringError(f"{value!r} is not ASCII", path=path) from None
    if len(data) > length:
        raise StringError(f"{value!r} is {len(data)} bytes, the field holds {length}", path=path)
    return data.ljust(length, b"\0")


class Require(Check):
    """A rule of the spec over fields already parsed: ``CheckError(reason)`` when it fails."""

    def __init__(self, func, reason: str) -> None:
        super().__init__(func)
        self.reason = reason

    def _parse(self, stream, context, path):
        if not evaluate(self.func, context):
            raise CheckError(self.reason, path=path)

    def _build(self, obj, stream, context, path):
        if not evaluate(self.func, context):
            raise CheckError(self.reason, path=path)


def _unwrap(sc):
    """A member as (name, construct): ``"name" / X`` wraps X in a ``Renamed``."""
    return (sc.name, sc.subcon) if isinstance(sc, Renamed) else (sc.name, sc)


def _fixed_format(sc) -> str | None:
    """The ``struct`` code of a fixed-size member, or None when its size is not constant."""
    if isinstance(sc, FormatField):
        return sc.fmtstr[1:]
    if isinstance(sc, (Bytes, Text)) and isinstance(sc.length, int):
        return f"{sc.length}s"
    if isinstance(sc, Rebuild) and isinstance(sc.subcon, FormatField):
        return sc.subcon.fmtstr[1:]
    return None


def _text_expr(value: str) -> str:
    return f"('' if {value}[0] == 0 else {value}.partition(b'\\0')[0].decode('ascii'))"


class Layout(Struct):
    """A ``Struct`` whose compiled form packs each fixed-size run with one ``struct`` call.

    ``compile()`` returns construct's ``Compiled`` (so ``.parse``/``.build`` behave as usual)
    with two more functions for callers that want no stream in between:

    * ``parse_from(data, pos) -> (values, end)``: a plain dict of the named fields, without
      the ``Rebuild`` ones, and the offset after the last byte read;
    * ``build_bytes(values) -> bytes``: the encoded fields of a mapping of values.

    On bad input they raise whatever comes first (``struct.error``, ``StreamError``,
    ``CheckError``, ``StringError``, ``UnicodeError``, ``TypeError``, ...); callers run the
    interpreted ``parse``/``build`` again to learn which field failed and why.
    """

    def compile(self, filename=None):
        compiled = super().compile(filename)
        compiled.parse_from = compiled.module.__dict__[self._parse_from_name]
        compiled.build_bytes = compiled.module.__dict__[self._build_bytes_name]
        return compiled

    def _runs(self):
        """Split the members into fixed-size runs (lists) and single variable members."""
        runs, current = [], []
        for member in map(_unwrap, self.subcons):
            if _fixed_format(member[1]) is not None or isinstance(member[1], Require):
                current.append(member)
                continue
            if current:
                runs.append(current)
                current = []
            runs.append(member)
        if current:
            runs.append(current)
        return runs

    # --------------------------------------------------------------------- parsing

    def _emitparse(self, code):
        ident = code.allocateId()
        self._parse_from_name = fname = f"parse_from_{ident}"
        lines = [f"def {fname}(data, pos):"]
        derived = [name for name, sc in map(_unwrap, self.subcons) if isinstance(sc, Rebuild)]
        runs = self._runs()
        if not runs or not isinstance(runs[0], list):
            lines.append("    this = {}")
        for index, run in enumerate(runs):
            if isinstance(run, list):
                lines += self._emit_parse_run(code, run, first=index == 0)
            else:
                lines += self._emit_parse_variable(run)
        if derived:
            lines.append("    del " + ", ".join(f"this[{n!r}]" for n in derived))
        lines.append("    return this, pos")
        lines += [
            f"def parse_layout_{ident}(io, this):",
            "    start = io.tell()",
            f"    values, end = {fname}(io.read(), 0)",
            "    io.seek(start + end)",
            "    return values",
        ]
        code.append("\n".join(lines) + "\n")
        return f"parse_layout_{ident}(io, this)"

    def _emit_parse_run(self, code, run, first=False):
        fields = [(name, sc) for name, sc in run if not isinstance(sc, Require)]
        lines = []
        if fields:
            fmt = ">" + "".join(_fixed_format(sc) for _, sc in fields)
            ident = code.allocateId()
            code.append(f"layout_struct_{ident} = struct.Struct({fmt!r})\n")
            names = [f"_f{ident}_{i}" for i in range(len(fields))]
            lines.append(f"    {', '.join(names)}, = layout_struct_{ident}.unpack_from(data, pos)")
            lines.append(f"    pos += {struct.calcsize(fmt)}")
            items = [f"{name!r}: {_text_expr(var) if isinstance(sc, Text) else var}"
                     for var, (name, sc) in zip(names, fields)]
            if first:
                lines.append(f"    this = {{{', '.join(items)}}}")
            else:
                lines += [f"    this[{item.split(': ', 1)[0]}] = {item.split(': ', 1)[1]}"
                          for item in items]
        elif first:
            lines.append("    this = {}")
        for _, sc in run:
            if isinstance(sc, Require):
                lines.append(f"    if not ({sc.func!r}): raise CheckError({sc.reason!r})")
        return lines

    def _emit_parse_variable(self, member):
        name, sc = member
        if isinstance(sc, Array) and isinstance(sc.subcon, (Text, Bytes)):
            size = sc.subcon.length
            item = _text_expr(f"data[_i:_i + {size}]") if isinstance(sc.subcon, Text) \
                else f"data[_i:_i + {size}]"
            return [
                f"    _n = ({sc.count!r}) * {size}",
                f"    if len(data) - pos < _n: raise StreamError('{name}: stream ended')",
                f"    this[{name!r}] = tuple([{item} for _i in range(pos, pos + _n, {size})])",
                "    pos += _n",
            ]
        if isinstance(sc, Bytes):
            return [
                f"    _n = {sc.length!r}",
                f"    if len(data) - pos < _n: raise StreamError('{name}: stream ended')",
                f"    this[{name!r}] = data[pos:pos + _n]",
                "    pos += _n",
            ]
        raise TypeError(f"Layout cannot compile member {name!r}: {sc!r}")

    # --------------------------------------------------------------------- building

    def _emitbuild(self, code):
        ident = code.allocateId()
        self._build_bytes_name = fname = f"build_bytes_{ident}"
        lines = [f"def {fname}(obj):", "    this = obj"]
        # Derived counts live in locals, so the caller's mapping is read, never copied.
        self._rebuilt = {name: f"_rb_{name}" for name, sc in map(_unwrap, self.subcons)
                         if isinstance(sc, Rebuild)}
        for name, sc in map(_unwrap, self.subcons):
            if isinstance(sc, Rebuild):
                lines.append(f"    {self._rebuilt[name]} = {self._expr(sc.func)}")
        parts = []
        for run in self._runs():
            if isinstance(run, list):
                lines += self._emit_build_run(code, run, parts)
            else:
                lines += self._emit_build_variable(run, parts)
        lines.append(f"    return {' + '.join(parts) if parts else repr(b'')}")
        lines += [
            f"def build_layout_{ident}(obj, io, this):",
            f"    io.write({fname}(obj))",
            "    return obj",
        ]
        code.append("\n".join(lines) + "\n")
        return f"build_layout_{ident}(obj, io, this)"

    def _expr(self, func) -> str:
        """A construct expression as code over ``this``, with derived fields read from locals."""
        text = repr(func)
        for name, local in self._rebuilt.items():
            text = text.replace(f"this[{name!r}]", local)
        return text

    def _value(self, name: str) -> str:
        return self._rebuilt.get(name) or f"this[{name!r}]"

    def _emit_build_run(self, code, run, parts):
        lines = [f"    if not ({self._expr(sc.func)}): raise CheckError({sc.reason!r})"
                 for _, sc in run if isinstance(sc, Require)]
        fields = [(name, sc) for name, sc in run if not isinstance(sc, Require)]
        if not fields:
            return lines
        fmt = ">" + "".join(_fixed_format(sc) for _, sc in fields)
        ident = code.allocateId()
        code.append(f"layout_struct_{ident} = struct.Struct({fmt!r})\n")
        args, misfit = [], []
        for i, (name, sc) in enumerate(fields):
            if isinstance(sc, Text):
                lines.append(f"    _t{ident}_{i} = this[{name!r}].encode('ascii')")
                misfit.append(f"len(_t{ident}_{i}) > {sc.length}")
                args.append(f"_t{ident}_{i}")
            elif isinstance(sc, Bytes):
                misfit.append(f"len(this[{name!r}]) != {sc.length}")
                args.append(f"this[{name!r}]")
            else:
                args.append(self._value(name))
        if misfit:
            lines.append(f"    if {' or '.join(misfit)}: raise StringError('field size')")
        lines.append(f"    _p{ident} = layout_struct_{ident}.pack({', '.join(args)})")
        parts.append(f"_p{ident}")
        return lines

    def _emit_build_variable(self, member, parts):
        name, sc = member
        var = f"_v{len(parts)}"
        parts.append(var)
        if isinstance(sc, Array) and isinstance(sc.subcon, (Text, Bytes)):
            size = sc.subcon.length
            encode = "_x.encode('ascii')" if isinstance(sc.subcon, Text) else "_x"
            misfit = f"len(_e) > {size}" if isinstance(sc.subcon, Text) else f"len(_e) != {size}"
            return [
                f"    if len(this[{name!r}]) != ({self._expr(sc.count)}): "
                f"raise CheckError('{name}: count')",
                f"    {var} = []",
                f"    for _x in this[{name!r}]:",
                f"        _e = {encode}",
                f"        if {misfit}: raise StringError('{name}: size')",
                f"        {var}.append(_e.ljust({size}, b'\\0'))",
                f"    {var} = b''.join({var})",
            ]
        if isinstance(sc, Bytes):
            return [
                f"    {var} = this[{name!r}]",
                f"    if type({var}) is not bytes: {var} = memoryview({var}).tobytes()",
                f"    if len({var}) != ({self._expr(sc.length)}): raise StreamError('{name}: length')",
            ]
        raise TypeError(f"Layout cannot compile member {name!r}: {sc!r}")
