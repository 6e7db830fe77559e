"""Regenerate the byte-exact fixture pages in tests/data/pages/.

These three files cannot be kept reliably as ordinary text in version control
(editors and git may rewrite line endings, strip the BOM or refuse binary), so
they are written from here. Run from anywhere:

    python tests/data/make_fixture_pages.py

The other fixture pages in that folder are plain UTF-8 text and are edited by hand.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

PAGES = Path(__file__).resolve().parent / "pages"

BOM = "\ufeff"


def good_crlf_bom() -> bytes:
    """A valid page with a UTF-8 BOM, CRLF endings, trailing spaces and runs of 3 blank lines."""
    lines = [
        BOM + "new   ",  # 1: BOM and trailing spaces
        "",
        "Trending papers for the leap day",  # 3
        "",
        "Subscribe",  # 5
        "",  # 6-8: a run of three blank lines
        "",
        "",
        "Feb 29  ",  # 9: the date, with trailing spaces
        "",
        "Schrödinger Bridges for Aligning Satellite and Street-Level Imagery ",  # 11: title 1
        "",
        # 13: abstract 1
        "Matching a street-level photo to the satellite tile it was taken in is hard because the two "
        "views share almost no pixels. We learn a Schrödinger bridge between the two image "
        "distributions and use the bridge cost as a retrieval score. On a city-scale benchmark the "
        "method localises 71% of photos to within 25 m, and a query takes ≈40 ms on one GPU.",
        "",  # 14-16: a run of three blank lines
        "",
        "",
        "Ångström-Level Denoising of Cryo-EM Maps with Equivariant Score Networks",  # 17: title 2
        "",
        # 19: abstract 2, with trailing spaces
        "Cryo-electron microscopy maps are noisy at the resolutions needed to place individual "
        "side chains. We train a rotation-equivariant score network on simulated maps and use it "
        "as a denoising prior, sharpening experimental maps from 3.4 Å to an effective 2.9 Å "
        "without over-fitting to the deposited atomic models.   ",
        "",
        "Δ-Merge: Combining Fine-Tuned Checkpoints Through Sign-Consistent Weight Differences",  # 21
        "",
        # 23: abstract 3
        "Merging several fine-tuned copies of one base model usually averages their weight "
        "differences, which lets conflicting updates cancel out. Δ-Merge keeps, for every "
        "parameter, only the differences whose sign agrees with the majority and rescales them. "
        "Merging five task-specific models this way retains 94% of their individual accuracy. "
        "Code: https://github.com/delta-merge/dmerge.",
        "",  # 24-26: trailing run of three blank lines
        "",
        "",
    ]
    return "\r\n".join(lines).encode("utf-8") + b"\r\n"


def bad_binary() -> bytes:
    """A tiny PNG header followed by zeros: NUL bytes, not text."""
    signature = b"\x89PNG\r\n\x1a\n"
    ihdr_data = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)
    ihdr = struct.pack(">I", len(ihdr_data)) + b"IHDR" + ihdr_data
    ihdr += struct.pack(">I", zlib.crc32(b"IHDR" + ihdr_data))
    data = signature + ihdr
    return data + b"\x00" * (320 - len(data))


def bad_undecodable() -> bytes:
    """A valid-looking page whose line 9 (the first title) holds bytes that are not UTF-8."""
    lines = [
        b"new",  # 1
        b"",
        b"Papers worth reading, every morning",  # 3
        b"",
        b"Subscribe",  # 5
        b"",
        b"Mar 3",  # 7
        b"",
        b"Robust Tokenisation for Noisy OCR \xff\xfe\xfa Output",  # 9: invalid UTF-8
        b"",
        b"Text recovered by optical character recognition from old newspapers is full of broken "
        b"words and stray symbols, which inflates sequence length for standard subword tokenisers. "
        b"We fit a tokeniser on synthetic OCR noise and show it shortens such text by 19% while "
        b"improving downstream named-entity recognition by three F1 points.",  # 11
        b"",
        b"Reading Order Detection for Multi-Column Historical Documents",  # 13
        b"",
        b"Multi-column pages with headlines, adverts and captions confuse reading order models "
        b"trained on modern documents. We frame reading order as ranking text blocks with a small "
        b"graph network over layout features and reach 92% exact-order accuracy on a new set of "
        b"1,200 digitised newspaper pages.",  # 15
    ]
    return b"\n".join(lines) + b"\n"


FILES = {
    "good-crlf-bom.txt": good_crlf_bom,
    "bad-binary.bin.txt": bad_binary,
    "bad-undecodable.txt": bad_undecodable,
}


def main() -> None:
    PAGES.mkdir(parents=True, exist_ok=True)
    for name, build in FILES.items():
        data = build()
        (PAGES / name).write_bytes(data)
        print(f"wrote {PAGES / name} ({len(data)} bytes)")

    # Self-checks: the properties the tests rely on.
    crlf = (PAGES / "good-crlf-bom.txt").read_bytes()
    assert crlf.startswith(b"\xef\xbb\xbf") and b"\n" not in crlf.replace(b"\r\n", b"")
    assert crlf.decode("utf-8-sig").splitlines()[8] == "Feb 29  "
    binary = (PAGES / "bad-binary.bin.txt").read_bytes()
    assert binary.index(b"\x00") == 8 and binary[:8].count(b"\n") == 2  # first NUL on line 3
    undecodable = (PAGES / "bad-undecodable.txt").read_bytes()
    assert b"\xff\xfe\xfa" in undecodable.split(b"\n")[8]  # line 9
    try:
        undecodable.decode("utf-8")
    except UnicodeDecodeError as exc:
        assert exc.start == undecodable.index(b"\xff")
    else:
        raise AssertionError("bad-undecodable.txt decoded as UTF-8")


if __name__ == "__main__":
    main()
