"""Hash, UUID, URL, network (CIDR), regex and date functions of Nomad's jobspec2 set.

Semantics follow the cty / go-cty-funcs definitions Nomad uses: hashes are hex digests of the
UTF-8 bytes, ``urlencode`` is Go's ``url.QueryEscape``, ``regex_replace`` takes Go's ``$1`` /
``${name}`` replacement syntax, ``formatdate`` and ``timeadd`` take RFC 3339 timestamps.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from rawexec.jobspec.durations import parse_duration_ns
from rawexec.jobspec.hcl.functions import Func, FuncContext, FuncError, arg_error, arity, as_int, as_str

if TYPE_CHECKING:
    import ipaddress

    Net = ipaddress.IPv4Network | ipaddress.IPv6Network

__all__ = ["ENCODING_FUNCTIONS", "go_title", "graphemes"]


def _hash(name: str, algo: str) -> Func:
    def fn(a: list[Any], c: FuncContext) -> Any:
        arity(name, a, 1)
        return hashlib.new(algo, as_str(name, a[0]).encode("utf-8")).hexdigest()

    return fn


def _fn_uuidv4(a: list[Any], c: FuncContext) -> Any:
    arity("uuidv4", a, 0)
    return str(uuid.uuid4())


_NAMESPACES = {"dns": uuid.NAMESPACE_DNS, "url": uuid.NAMESPACE_URL, "oid": uuid.NAMESPACE_OID,
               "x500": uuid.NAMESPACE_X500}


def _fn_uuidv5(a: list[Any], c: FuncContext) -> Any:
    arity("uuidv5", a, 2)
    ns_text, name = as_str("uuidv5", a[0], "namespace"), as_str("uuidv5", a[1], "name")
    ns = _NAMESPACES.get(ns_text)
    if ns is None:
        try:
            ns = uuid.UUID(ns_text)
        except ValueError:
            raise arg_error("uuidv5", "namespace", f'"{ns_text}" is not supported; use dns, url, oid, x500 '
                            "or a UUID") from None
    return str(uuid.uuid5(ns, name))


def _fn_urlencode(a: list[Any], c: FuncContext) -> Any:
    arity("urlencode", a, 1)
    import urllib.parse  # (it imports ipaddress: only when a job file calls urlencode)

    return urllib.parse.quote_plus(as_str("urlencode", a[0]), safe="")


def _fn_strrev(name: str) -> Func:
    def fn(a: list[Any], c: FuncContext) -> Any:
        arity(name, a, 1)
        return "".join(reversed(graphemes(as_str(name, a[0]))))

    return fn


def graphemes(s: str) -> list[str]:
    """Split text into user-perceived characters (cty reverses those, not code points).

    An approximation of Unicode's grapheme clusters that covers what job files hold: combining
    marks, variation selectors and emoji skin tones stay on their base, ZWJ sequences and CR LF
    stay whole.
    """
    out: list[str] = []
    join_next = False
    for ch in s:
        attach = out and (join_next or unicodedata.category(ch) in ("Mn", "Mc", "Me")
                          or "\U0001f3fb" <= ch <= "\U0001f3ff" or (ch == "\n" and out[-1].endswith("\r"))
                          or ch == "\u200d")
        if attach:
            out[-1] += ch
        else:
            out.append(ch)
        join_next = ch == "\u200d"
    return out


def go_title(s: str) -> str:
    """Go's ``strings.Title``: upper-case the letter after each separator, leave the rest alone.

    A separator is an ASCII character other than a letter, digit or ``_``, or a Unicode space;
    so ``it's ok`` becomes ``It'S Ok`` (as in cty's ``title``) and ``hELLO`` stays ``HELLO``.
    """
    out: list[str] = []
    prev_sep = True
    for ch in s:
        out.append(ch.upper() if prev_sep and ch.isalpha() else ch)
        ascii_sep = not (ch.isalnum() or ch == "_")
        prev_sep = ascii_sep if ord(ch) <= 0x7F else (not ch.isalnum() and ch.isspace())
    return "".join(out)


def _fn_title(a: list[Any], c: FuncContext) -> Any:
    arity("title", a, 1)
    return go_title(as_str("title", a[0]))


def _fn_indent(a: list[Any], c: FuncContext) -> Any:
    arity("indent", a, 2)
    spaces = as_int("indent", a[0], "spaces")
    if spaces < 0 or spaces > 10_000:
        raise arg_error("indent", "spaces", "must be between 0 and 10000")
    return as_str("indent", a[1]).replace("\n", "\n" + " " * spaces)


_GO_REPL = re.compile(r"\$(\$|\{(\w*)\}|(\w+))")


def _go_expand(template: str, m: re.Match[str]) -> str:
    """Go's ``Regexp.Expand``: ``$1``, ``${1}``, ``$name``, ``${name}``, ``$$``; unknown names expand to ""."""
    def one(r: re.Match[str]) -> str:
        if r.group(1) == "$":
            return "$"
        ref = r.group(2) if r.group(2) is not None else r.group(3)
        if not ref:
            return r.group(0)
        try:
            return m.group(int(ref) if ref.isdigit() else ref) or ""
        except IndexError:  # no such group: Go expands it to ""
            return ""

    return _GO_REPL.sub(one, template)


def _compile(name: str, pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise arg_error(name, "substr", f"invalid regular expression {pattern!r}: {exc}") from None


def _fn_regex_replace(a: list[Any], c: FuncContext) -> Any:
    arity("regex_replace", a, 3)
    s = as_str("regex_replace", a[0], "str")
    pattern = _compile("regex_replace", as_str("regex_replace", a[1], "substr"))
    rep = as_str("regex_replace", a[2], "replace")
    return pattern.sub(lambda m: _go_expand(rep, m), s)


# -- networks -------------------------------------------------------------------------------------
# (ipaddress, ~8 ms to import, is imported by the cidr functions when a job file calls one)


def _network(name: str, v: Any) -> Net:
    import ipaddress

    text = as_str(name, v, "prefix")
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise arg_error(name, "prefix", f'invalid CIDR expression: "{text}" is not an address/prefix '
                        'like "10.0.0.0/16"') from None


def _fn_cidrhost(a: list[Any], c: FuncContext) -> Any:
    arity("cidrhost", a, 2)
    net, num = _network("cidrhost", a[0]), as_int("cidrhost", a[1], "hostnum")
    size = net.num_addresses
    if not -size <= num < size:
        raise arg_error("cidrhost", "hostnum", f"prefix of /{net.prefixlen} does not accommodate a host "
                        f"numbered {num}")
    base = int(net.network_address)
    import ipaddress

    return str(ipaddress.ip_address(base + (num if num >= 0 else size + num)))


def _fn_cidrnetmask(a: list[Any], c: FuncContext) -> Any:
    arity("cidrnetmask", a, 1)
    net = _network("cidrnetmask", a[0])
    if net.version != 4:
        raise arg_error("cidrnetmask", "prefix", "only IPv4 networks are supported")
    return str(net.netmask)


def _subnet(name: str, net: Net, newbits: int, netnum: int) -> Net:
    newlen = net.prefixlen + newbits
    if newbits < 0:
        raise arg_error(name, "newbits", "must not be negative")
    if newlen > net.max_prefixlen:
        raise arg_error(name, "newbits", f"insufficient address space to extend prefix of {net.prefixlen} "
                        f"by {newbits}")
    if not 0 <= netnum < (1 << newbits):
        raise arg_error(name, "netnum", f"prefix extension of {newbits} does not accommodate a subnet "
                        f"numbered {netnum}")
    base = int(net.network_address) + (netnum << (net.max_prefixlen - newlen))
    import ipaddress

    return ipaddress.ip_network((base, newlen))


def _fn_cidrsubnet(a: list[Any], c: FuncContext) -> Any:
    arity("cidrsubnet", a, 3)
    net = _network("cidrsubnet", a[0])
    return str(_subnet("cidrsubnet", net, as_int("cidrsubnet", a[1], "newbits"),
                       as_int("cidrsubnet", a[2], "netnum")))


def _fn_cidrsubnets(a: list[Any], c: FuncContext) -> Any:
    arity("cidrsubnets", a, 1, -1)
    import ipaddress

    net = _network("cidrsubnets", a[0])
    out: list[str] = []
    nxt = int(net.network_address)
    end = int(net.broadcast_address)
    for i, bits_v in enumerate(a[1:], start=1):
        bits = as_int("cidrsubnets", bits_v, "newbits")
        newlen = net.prefixlen + bits
        if bits < 1 or newlen > net.max_prefixlen:
            raise FuncError(f"cidrsubnets(): argument {i + 1}: would extend prefix to {newlen} bits, which "
                            f"is {'too long' if bits >= 1 else 'not longer than the base prefix'} for an "
                            f"IPv{net.version} address")
        step = 1 << (net.max_prefixlen - newlen)
        start = (nxt + step - 1) // step * step  # align to the subnet size
        if start + step - 1 > end:
            raise FuncError(f"cidrsubnets(): argument {i + 1}: not enough remaining address space for a "
                            f"subnet with a prefix of {newlen} bits after {out[-1] if out else net}")
        out.append(str(ipaddress.ip_network((start, newlen))))
        nxt = start + step
    return out


# -- dates ----------------------------------------------------------------------------------------
_RFC3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})\Z")


def _timestamp(name: str, v: Any) -> datetime:
    text = as_str(name, v, "timestamp")
    m = _RFC3339.match(text)
    if m is None:
        raise arg_error(name, "timestamp", f'not a valid RFC3339 timestamp: "{text}" (e.g. "2024-01-02T15:04:05Z")')
    y, mo, d, h, mi, s = (int(x) for x in m.group(1, 2, 3, 4, 5, 6))
    frac, off = m.group(7), m.group(8)
    tz = UTC
    if off not in ("Z", "z"):
        sign = -1 if off[0] == "-" else 1
        tz = timezone(sign * timedelta(hours=int(off[1:3]), minutes=int(off[4:6])))
    try:
        dt = datetime(y, mo, d, h, mi, s, tzinfo=tz)
    except ValueError as exc:
        raise arg_error(name, "timestamp", f'not a valid RFC3339 timestamp: "{text}" ({exc})') from None
    if frac:
        dt += timedelta(microseconds=round(float(frac) * 1_000_000))
    return dt


def _offset(dt: datetime, colon: bool, utc_z: bool) -> str:
    off = dt.utcoffset() or timedelta(0)
    if utc_z and off == timedelta(0) and dt.tzinfo is UTC:
        return "Z"
    mins = int(off.total_seconds()) // 60
    sign = "-" if mins < 0 else "+"
    mins = abs(mins)
    return f"{sign}{mins // 60:02d}{':' if colon else ''}{mins % 60:02d}"


_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December"]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def _date_verb(tok: str, dt: datetime) -> str | None:
    h12 = dt.hour % 12 or 12
    table = {
        "YYYY": f"{dt.year:04d}", "YY": f"{dt.year % 100:02d}",
        "MMMM": _MONTHS[dt.month - 1], "MMM": _MONTHS[dt.month - 1][:3], "MM": f"{dt.month:02d}",
        "M": str(dt.month), "DD": f"{dt.day:02d}", "D": str(dt.day),
        "EEEE": _DAYS[dt.weekday()], "EEE": _DAYS[dt.weekday()][:3],
        "hh": f"{dt.hour:02d}", "h": str(dt.hour), "HH": f"{h12:02d}", "H": str(h12),
        "AA": "PM" if dt.hour >= 12 else "AM", "aa": "pm" if dt.hour >= 12 else "am",
        "mm": f"{dt.minute:02d}", "m": str(dt.minute), "ss": f"{dt.second:02d}", "s": str(dt.second),
        "ZZZZZ": _offset(dt, True, False), "ZZZZ": _offset(dt, False, False),
        "ZZZ": "UTC" if dt.tzinfo is UTC else _offset(dt, False, False),
        "Z": _offset(dt, True, True),
    }
    return table.get(tok)


def _fn_formatdate(a: list[Any], c: FuncContext) -> Any:
    arity("formatdate", a, 2)
    spec = as_str("formatdate", a[0], "format")
    dt = _timestamp("formatdate", a[1])
    out: list[str] = []
    i = 0
    while i < len(spec):
        ch = spec[i]
        if ch == "'":
            j = spec.find("'", i + 1)
            if j < 0:
                raise arg_error("formatdate", "format", "unterminated literal '")
            out.append(spec[i + 1:j] if j > i + 1 else "'")
            i = j + 1
            continue
        if ch.isascii() and ch.isalpha():
            j = i
            while j < len(spec) and spec[j] == ch:
                j += 1
            text = _date_verb(spec[i:j], dt)
            if text is None:
                raise arg_error("formatdate", "format", f'invalid date format verb "{spec[i:j]}": '
                                "use YYYY, MM, DD, hh, mm, ss, ... and quote literal letters in '...'")
            out.append(text)
            i = j
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _fn_timeadd(a: list[Any], c: FuncContext) -> Any:
    arity("timeadd", a, 2)
    dt = _timestamp("timeadd", a[0])
    dur = as_str("timeadd", a[1], "duration")
    try:
        ns = parse_duration_ns(dur)
    except ValueError as exc:
        raise arg_error("timeadd", "duration", f'{exc}; e.g. "1h30m" or "-10s"') from None
    try:
        res = dt + timedelta(microseconds=ns // 1000)
    except OverflowError:
        raise FuncError("timeadd(): the result is out of range") from None
    return res.strftime("%Y-%m-%dT%H:%M:%S") + _offset(res, True, True)


ENCODING_FUNCTIONS: dict[str, Func] = {
    "md5": _hash("md5", "md5"),
    "sha1": _hash("sha1", "sha1"),
    "sha256": _hash("sha256", "sha256"),
    "sha512": _hash("sha512", "sha512"),
    "uuidv4": _fn_uuidv4,
    "uuidv5": _fn_uuidv5,
    "urlencode": _fn_urlencode,
    "reverse": _fn_strrev("reverse"),
    "strrev": _fn_strrev("strrev"),
    "title": _fn_title,
    "indent": _fn_indent,
    "regex_replace": _fn_regex_replace,
    "cidrhost": _fn_cidrhost,
    "cidrnetmask": _fn_cidrnetmask,
    "cidrsubnet": _fn_cidrsubnet,
    "cidrsubnets": _fn_cidrsubnets,
    "formatdate": _fn_formatdate,
    "timeadd": _fn_timeadd,
}
