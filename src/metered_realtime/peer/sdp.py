"""Pure SDP helpers: ice-ufrag, msid per m-section, extmap id pinning, hygiene caps.

Everything here works on SDP text and never raises on hostile input: malformed lines are
skipped, and over-long or excessive values are dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: At most this many ``a=msid`` entries are read from one description.
MAX_MSID_ENTRIES = 256
#: Stream ids, track ids and ufrags longer than this are ignored.
MAX_ID_LENGTH = 256

_EXTMAP_RE = re.compile(r"^a=extmap:(\d+)(/[A-Za-z]+)?[ \t]+(\S+)(.*)$")


@dataclass(frozen=True, slots=True)
class MediaSection:
    """What the helpers need from one ``m=`` section."""

    index: int
    kind: str
    mid: str | None
    msid: tuple[tuple[str, str], ...]
    """(stream id, track id) pairs announced with ``a=msid`` in this section."""
    direction: str | None
    port: int | None


def _lines(sdp: str) -> list[str]:
    return sdp.replace("\r\n", "\n").split("\n")


def _valid_id(value: str) -> bool:
    return 0 < len(value) <= MAX_ID_LENGTH


def extract_ice_ufrag(sdp: object) -> str | None:
    """The first ``a=ice-ufrag`` value of a description, or None.

    Session-level and media-level lines both count; over-long values are ignored.
    """
    if not isinstance(sdp, str):
        return None
    for line in _lines(sdp):
        if line.startswith("a=ice-ufrag:"):
            value = line[len("a=ice-ufrag:") :].strip()
            if _valid_id(value):
                return value
            return None
    return None


def bundle_mids(sdp: object) -> tuple[str, ...]:
    """The mids of the first ``a=group:BUNDLE`` line, in order (empty when there is none)."""
    if not isinstance(sdp, str):
        return ()
    for line in _lines(sdp):
        if line.startswith("a=group:BUNDLE"):
            mids = line[len("a=group:BUNDLE") :].split()
            return tuple(m for m in mids[:MAX_MSID_ENTRIES] if _valid_id(m))
    return ()


def parse_sections(sdp: object) -> list[MediaSection]:
    """The media sections of a description with their msid entries (capped)."""
    if not isinstance(sdp, str):
        return []
    sections: list[MediaSection] = []
    kind: str | None = None
    mid: str | None = None
    direction: str | None = None
    port: int | None = None
    msid: list[tuple[str, str]] = []
    total_msid = 0

    def flush() -> None:
        if kind is not None:
            sections.append(MediaSection(len(sections), kind, mid, tuple(msid), direction, port))

    for line in _lines(sdp):
        if line.startswith("m="):
            flush()
            parts = line[2:].split()
            kind = parts[0] if parts else ""
            try:
                port = int(parts[1]) if len(parts) > 1 else None
            except ValueError:
                port = None
            mid = None
            direction = None
            msid = []
        elif kind is None:
            continue
        elif line.startswith("a=mid:"):
            value = line[len("a=mid:") :].strip()
            mid = value if _valid_id(value) else None
        elif line in ("a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"):
            direction = line[2:]
        elif line.startswith("a=msid:"):
            if total_msid >= MAX_MSID_ENTRIES:
                continue
            parts = line[len("a=msid:") :].split()
            if not parts:
                continue
            stream_id = parts[0]
            track_id = parts[1] if len(parts) > 1 else ""
            if not _valid_id(stream_id) or len(track_id) > MAX_ID_LENGTH:
                continue
            total_msid += 1
            msid.append((stream_id, track_id))
    flush()
    return sections


def msid_by_mid(sdp: object) -> dict[str, tuple[str, str]]:
    """Map of mid -> (stream id, track id) for sections announcing exactly one msid."""
    out: dict[str, tuple[str, str]] = {}
    for section in parse_sections(sdp):
        if section.mid is not None and section.msid:
            out[section.mid] = section.msid[0]
    return out


def extmap_ids(sdp: object) -> dict[str, int]:
    """Header-extension URI -> id, as negotiated in a description (first occurrence wins)."""
    out: dict[str, int] = {}
    if not isinstance(sdp, str):
        return out
    for line in _lines(sdp):
        match = _EXTMAP_RE.match(line)
        if match is None:
            continue
        ext_id = int(match.group(1))
        if 1 <= ext_id <= 255:
            out.setdefault(match.group(3), ext_id)
    return out


def pin_extmap_ids(sdp: str, negotiated: dict[str, int]) -> str:
    """Rewrite ``a=extmap`` ids in an offer so already negotiated URIs keep their ids.

    Browsers reject a re-offer that changes the id of a negotiated header extension.
    URIs not negotiated before keep their own id unless it collides with a pinned one,
    in which case they get the lowest free id. Line endings are preserved.
    """
    if not negotiated:
        return sdp
    crlf = "\r\n" in sdp
    lines = _lines(sdp)
    # Ids in use by pinned URIs: never hand them to another URI.
    pinned_ids = set(negotiated.values())
    # Decide the new id per (section, uri) once, so a section stays self-consistent.
    out: list[str] = []
    section_used: set[int] = set()
    remap: dict[str, int] = {}
    for line in lines:
        if line.startswith("m="):
            section_used = set()
            remap = {}
            out.append(line)
            continue
        match = _EXTMAP_RE.match(line)
        if match is None:
            out.append(line)
            continue
        old_id = int(match.group(1))
        uri = match.group(3)
        if uri in negotiated:
            new_id = negotiated[uri]
        elif uri in remap:
            new_id = remap[uri]
        elif old_id not in pinned_ids and old_id not in section_used:
            new_id = old_id
        else:
            new_id = next(i for i in range(1, 256) if i not in pinned_ids and i not in section_used)
        remap[uri] = new_id
        section_used.add(new_id)
        direction = match.group(2) or ""
        out.append(f"a=extmap:{new_id}{direction} {uri}{match.group(4)}")
    return ("\r\n" if crlf else "\n").join(out)


def looks_like_sdp(sdp: object) -> bool:
    """A cheap sanity check before handing text to aiortc's parser."""
    return isinstance(sdp, str) and sdp.startswith("v=") and "\nm=" in sdp.replace("\r", "")
