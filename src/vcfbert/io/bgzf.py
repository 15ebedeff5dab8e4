"""BGZF: a writer that compresses blocks on several threads (libdeflate releases the GIL),
and a reader that inflates them with libdeflate.

BGZF (SAM/BAM specification, section 4.1) is a series of gzip members of at most 64 KiB each,
with a ``BC`` extra field holding the member's size, ending with a fixed empty member. Any
gzip reader, htslib (bcftools, tabix), plink2 and pysam read it. Writing it ourselves lets the
imputed VCF — gigabytes of text for thousands of targets — be compressed on every core the
job has, where pysam's ``BGZFile`` uses one. The blocks are deflated by libdeflate (the
``deflate`` package), faster than zlib at level 6 for about the same size (docs/model.md,
"Inference speed", for what it changed in the imputation). Read back the same way
(:func:`inflated_blocks`), a reference panel's text comes out ~1.6 times as fast as through
pysam's ``BGZFile`` (docs/model.md, "Inference speed", the thirty-second session).
"""

from __future__ import annotations

import os
import struct
import zlib
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import deflate

from ..atomic import CloseOrAbort
from ..errors import InputError

BLOCK_INPUT = 65280  # uncompressed bytes per block (what htslib uses)
EOF_BLOCK = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")


_HEADER = 18  # bytes of a member's header with the BC field alone (XLEN 6)
_READ = 1 << 20  # compressed bytes read at a time


def is_bgzf_header(head: bytes) -> bool:
    """Whether ``head`` (a file's first bytes) starts a BGZF member as htslib requires it: gzip
    with the FEXTRA flag, an extra field of 6 bytes holding the ``BC`` subfield alone."""
    return (len(head) >= _HEADER and head[:4] == b"\x1f\x8b\x08\x04"
            and head[10:16] == b"\x06\x00BC\x02\x00")


def inflated_blocks(path: str | os.PathLike[str]) -> Iterator[bytes]:
    """The text of every member of a BGZF file in order, inflated by libdeflate and checked
    against the member's CRC32 (empty members, such as the EOF marker, give nothing).

    Raises:
        InputError: a member that is not BGZF (a file of BGZF and other gzip members, which
            htslib refuses too), truncated, or whose data or checksum is corrupt.
    """
    def fail(offset: int, what: str) -> InputError:
        return InputError(f"{path}: cannot decompress ({what} at byte {offset}); the file is "
                          "truncated or corrupt: re-create it with bgzip or bcftools view -Oz")

    with open(path, "rb") as fh:
        data = fh.read(_READ)
        start = 0  # of the next member in ``data``
        passed = 0  # bytes of the file before ``data``
        while True:
            whole = len(data) - start >= _HEADER
            if whole:
                if not is_bgzf_header(data[start:start + _HEADER]):
                    raise fail(passed + start, "a member that is not BGZF")
                need = int.from_bytes(data[start + 16:start + 18], "little") + 1
                whole = len(data) - start >= need
            if not whole:  # a header or member cut by the read: read on
                more = fh.read(_READ)
                if not more:
                    if len(data) > start:
                        raise fail(passed + start, "a truncated member")
                    return
                passed += start
                data, start = data[start:] + more, 0
                continue
            crc, size = struct.unpack_from("<II", data, start + need - 8)
            if size:
                body = memoryview(data)[start + _HEADER:start + need - 8]
                try:
                    text = deflate.deflate_decompress(body, size)
                except deflate.DeflateError as exc:
                    raise fail(passed + start, f"corrupt data: {exc}") from exc
                if deflate.crc32(text) != crc:
                    raise fail(passed + start, "a CRC32 mismatch")
                yield text
            start += need


def compress_block(data: bytes | memoryview, level: int) -> bytes:
    """One BGZF member holding ``data`` (at most :data:`BLOCK_INPUT` bytes)."""
    body = deflate.deflate_compress(data, level)
    if len(body) + 26 > 65536:  # incompressible: store it
        comp = zlib.compressobj(0, zlib.DEFLATED, -15)
        body = comp.compress(data) + comp.flush()
    header = struct.pack("<4BI2BH2BHH", 31, 139, 8, 4, 0, 0, 255, 6, 66, 67, 2, len(body) + 25)
    return header + body + struct.pack("<II", deflate.crc32(data), len(data))


class BgzfWriter(CloseOrAbort):
    """Append bytes to a BGZF file; blocks are compressed ``threads`` at a time.

    Compression runs behind the caller: blocks go to the thread pool as they fill and are
    written out in order once more than a few batches are waiting, so the caller formats the
    next records while the pool compresses the previous ones. Full blocks are compressed from
    the caller's buffer without a copy: what is passed to :meth:`write` must not change
    afterwards.

    A context manager: closed (the EOF member written) when the block succeeds, aborted
    when it raises.

    :attr:`members` lists the compressed and text size of every member written, in order (the
    EOF member and members from :meth:`write_members` aside) and :attr:`text_bytes` counts
    the text written: a place in the text maps to its virtual offset
    (:func:`vcfbert.io.tabix.virtual_offsets`).

    Args:
        path: file to create (truncated).
        threads: compression threads (1: in the calling thread).
        level: deflate level (1 fastest .. 12 smallest; 6 makes what htslib's default makes).
    """

    def __init__(self, path: str | os.PathLike[str], *, threads: int = 1, level: int = 6) -> None:
        self._fh = open(path, "wb")  # noqa: SIM115 - closed in close()
        self._level = level
        self._threads = max(1, int(threads))
        self._pool = ThreadPoolExecutor(self._threads) if self._threads > 1 else None
        self._buf = bytearray()  # the start of the next block (shorter than a block)
        self._max_pending = 16 * self._threads
        self._pending: deque[tuple[Future, int]] = deque()  # (member, text bytes), in order
        self.members: list[tuple[int, int]] = []  # (compressed, text) bytes of each member

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data).cast("B")
        if len(self._buf) + len(view) < BLOCK_INPUT:
            self._buf += view
            return
        head = BLOCK_INPUT - len(self._buf)
        if self._buf:
            self._buf += view[:head]
            self._submit(bytes(self._buf))
            view = view[head:]
        n_full = len(view) // BLOCK_INPUT * BLOCK_INPUT
        for i in range(0, n_full, BLOCK_INPUT):
            self._submit(view[i:i + BLOCK_INPUT])
        self._buf = bytearray(view[n_full:])

    @property
    def text_bytes(self) -> int:
        """The text written so far: in members, being compressed, or waiting for a block."""
        return (sum(text for _, text in self.members) + sum(text for _, text in self._pending)
                + len(self._buf))

    def _submit(self, block: bytes | memoryview) -> None:
        if self._pool is None:
            self._put(compress_block(block, self._level), len(block))
            return
        self._pending.append((self._pool.submit(compress_block, block, self._level),
                              len(block)))
        while len(self._pending) > self._max_pending:
            self._put_pending()

    def _put(self, member: bytes, text: int) -> None:
        self._fh.write(member)
        self.members.append((len(member), text))

    def _put_pending(self) -> None:
        future, text = self._pending.popleft()
        self._put(future.result(), text)

    def write_members(self, data: bytes | memoryview) -> int:
        """Append complete BGZF members (e.g. another BGZF file's bytes without its EOF
        member) after everything written so far: the text not yet in a block is closed into
        its own block first, so the members start on a block boundary. Returns the file
        offset they start at (not counted in :attr:`members` or :attr:`text_bytes`)."""
        self._flush(final=False)
        at = self._fh.tell()
        self._fh.write(data)
        return at

    def _flush(self, *, final: bool) -> None:
        if self._buf:
            self._submit(bytes(self._buf))
            self._buf = bytearray()
        while self._pending:
            self._put_pending()

    def close(self) -> None:
        self._flush(final=True)
        self._fh.write(EOF_BLOCK)
        self._fh.close()
        if self._pool is not None:
            self._pool.shutdown()

    def abort(self, exc: BaseException | None = None) -> None:
        self._fh.close()
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
