"""6-mer tokenizer for the Nucleotide Transformer: a facade over the C++ core
(`ntengine._C`) plus a slow pure-Python twin (`encode_python`) that tests use as the
reference.

The algorithm is the official `NucleotidesKmersTokenizer(k_mers=6)` one, id for id:
`<cls>` first; the sequence is split on N; each N is its own token; each N-free piece is
cut into 6-mers from its own start; a tail shorter than 6 becomes one token per base.
Every token keeps its (start, end) offset into the input (code points for str, bytes for
bytes); `<cls>` and padding get (0, 0).

Modes:
  * default (strict=False): lower-case (soft-masked) a c g t n read as upper case. Any other
    character raises `InvalidSequenceError` naming the sequence, position and character,
    or, with invalid="N", is read as N (its own token, splitting pieces like N).
  * strict=True: the official behaviour exactly: case-sensitive, a literal `<mask>` filling
    a 6-character chunk is the mask token, and the first token not in the vocabulary raises
    `UnknownTokenError` (a KeyError) with the official message.

numpy only: this module never imports torch.
"""

from __future__ import annotations

import functools
import itertools
import os
from typing import Iterable, NamedTuple, Sequence, Union

import numpy as np

try:
    from ntengine import _C
except ImportError as exc:  # not built: encode_python still works, Tokenizer says how to build
    _C = None
    _C_IMPORT_ERROR: ImportError | None = exc
else:
    _C_IMPORT_ERROR = None

SeqLike = Union[str, bytes]

# Why this order: the official vocabulary numbers 6-mers as base-4 numbers with
# digits A=0 T=1 C=2 G=3 (itertools.product("ATCG", repeat=6)), and lists the
# single bases in the same order.
_BASES = "ATCG"
_SPECIALS = {  # (before the 6-mers, after A T C G N)
    "v2": (("<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>"), ()),
    "v1": (("<unk>", "<pad>", "<mask>", "<cls>"), ("<eos>", "<bos>")),
}
_NOT_DECODED = ("<cls>", "<pad>", "<eos>", "<bos>")
_HINT = "(allowed: A C G T N, any case; pass invalid='N' to map other characters to N)"


class InvalidSequenceError(ValueError):
    """Default mode: a character outside A C G T N (any case).

    Attributes: `index` (sequence in the batch), `position` (0-based, code points for
    str / bytes for bytes), `char` (the character; a 1-byte bytes object for non-ASCII
    bytes input).
    """

    def __init__(self, index: int, position: int, char):
        self.index, self.position, self.char = index, position, char
        super().__init__(f"sequence {index}, position {position}: invalid character {char!r} {_HINT}")


class UnknownTokenError(KeyError):
    """strict=True: a token outside the vocabulary; args[0] is the official message
    ``Token <piece> not found in vocabulary``. Attributes: `index`, `position` (start of
    the token) and `token`."""

    def __init__(self, index: int, position: int, token: str):
        self.index, self.position, self.token = index, position, token
        super().__init__(f"Token {token} not found in vocabulary")


class Encoding(NamedTuple):
    """A padded batch. `attention_mask` is bool: True at real tokens (incl. `<cls>`)."""

    ids: np.ndarray  # int32 [B, L], pad_id after each sequence's tokens
    attention_mask: np.ndarray  # bool [B, L]
    offsets: np.ndarray  # int64 [B, L, 2], (start, end) per token; (0, 0) for cls / pad


@functools.lru_cache(maxsize=None)
def _vocab(version: str) -> tuple[tuple[str, ...], dict[str, int]]:
    """(tokens by id, token -> id) of one vocabulary version."""
    if version not in _SPECIALS:
        raise ValueError(f"version must be 'v1' or 'v2', got {version!r}")
    head, tail = _SPECIALS[version]
    kmers = ("".join(p) for p in itertools.product(_BASES, repeat=6))
    tokens = (*head, *kmers, *_BASES, "N", *tail)
    return tokens, {t: i for i, t in enumerate(tokens)}


def _check_mode(strict: bool, invalid: str) -> None:
    if invalid not in ("raise", "N"):
        raise ValueError(f"invalid must be 'raise' or 'N', got {invalid!r}")
    if strict and invalid != "raise":
        raise ValueError("strict=True reproduces the official tokenizer, which has no invalid='N'")


def _char_at(seq: SeqLike, pos: int):
    """The character at pos for messages; non-ASCII bytes stay bytes (b'\\xc3')."""
    if isinstance(seq, str):
        return seq[pos]
    return chr(seq[pos]) if seq[pos] < 128 else bytes(seq[pos : pos + 1])


def _token_at(seq: SeqLike, start: int, end: int) -> str:
    piece = seq[start:end]
    return piece if isinstance(piece, str) else bytes(piece).decode("ascii", "backslashreplace")


def encode_python(
    seq: SeqLike, version: str = "v2", strict: bool = False, invalid: str = "raise", index: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Slow, obviously-correct twin of the C++ tokenizer (the reference in tests).

    Args:
        seq: DNA as str (offsets in code points) or bytes (offsets in bytes).
        version, strict, invalid: as for `Tokenizer`.
        index: sequence index to name in errors.
    Returns:
        (ids int32 [T], offsets int64 [T, 2]), `<cls>` first.
    Raises:
        InvalidSequenceError (default mode) or UnknownTokenError (strict), as Tokenizer.
    """
    _check_mode(strict, invalid)
    _, token_to_id = _vocab(version)
    text = seq.decode("latin-1") if isinstance(seq, (bytes, bytearray)) else seq
    if not strict:
        chars = []
        for pos, ch in enumerate(text):
            up = ch.upper() if ch in "acgtn" else ch
            if up not in "ACGTN":
                if invalid == "raise":
                    raise InvalidSequenceError(index, pos, _char_at(seq, pos))
                up = "N"
            chars.append(up)
        text = "".join(chars)
    tokens = [("<cls>", 0, 0)]
    pos = 0
    for piece in text.split("N"):
        full = len(piece) // 6 * 6
        tokens += [(piece[k : k + 6], pos + k, pos + k + 6) for k in range(0, full, 6)]
        tokens += [(piece[k], pos + k, pos + k + 1) for k in range(full, len(piece))]
        pos += len(piece)
        if pos < len(text):  # the N that ended this piece
            tokens.append(("N", pos, pos + 1))
            pos += 1
    ids = []
    for token, start, end in tokens:  # the official lookup: first unknown token raises
        if token not in token_to_id:
            raise UnknownTokenError(index, start, _token_at(seq, start, end))
        ids.append(token_to_id[token])
    offsets = np.array([(s, e) for _, s, e in tokens], dtype=np.int64).reshape(-1, 2)
    return np.array(ids, dtype=np.int32), offsets


class Tokenizer:
    """Nucleotide Transformer 6-mer tokenizer (C++ core, threads over the batch).

    Args:
        version: "v2" (NT v2 models) or "v1" (NT v1); both vocabularies have 4107 tokens.
        strict: reproduce the official tokenizer exactly (see the module docstring).
        invalid: default mode only: "raise" on characters outside A C G T N (any case), or
            "N" to read them as N.
        max_length: default token limit for `batch_encode` (counts `<cls>`), e.g. the
            model's context; None for no limit. `encode` never truncates or checks it.
        num_threads: worker threads for batches (default os.cpu_count()).

    Attributes: vocab (token strings by id), vocab_size, pad_id, mask_id, cls_id, unk_id,
    eos_id, bos_id, version, strict, invalid, max_length, num_threads.
    """

    def __init__(self, version: str = "v2", strict: bool = False, invalid: str = "raise",
                 max_length: int | None = None, num_threads: int | None = None):
        _check_mode(strict, invalid)
        tokens, index = _vocab(version)
        if max_length is not None and (not isinstance(max_length, (int, np.integer)) or max_length < 1):
            raise ValueError(f"max_length must be a positive int or None, got {max_length!r}")
        num_threads = (os.cpu_count() or 1) if num_threads is None else num_threads
        if not isinstance(num_threads, (int, np.integer)) or num_threads < 1:
            raise ValueError(f"num_threads must be a positive int, got {num_threads!r}")
        if _C is None:
            raise ImportError("ntengine._C is not built; run `pip install -e .` in the repository "
                              f"({_C_IMPORT_ERROR})")
        from ntengine import cpu

        cpu.isa()  # a bad NTENGINE_CPU_ISA is an error here too: the C++ tokenizer has ISA builds
        self.version, self.strict, self.invalid = version, strict, invalid
        self.max_length = None if max_length is None else int(max_length)
        self.num_threads = int(num_threads)
        self.vocab = list(tokens)
        self.vocab_size = len(tokens)
        self._index = index
        self.unk_id, self.pad_id, self.mask_id, self.cls_id, self.eos_id, self.bos_id = (
            index[t] for t in ("<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>"))
        # The C++ core knows no vocabulary: it gets the id layout from here, and assumes
        # 6-mers numbered contiguously in base 4 and A T C G N consecutive.
        assert index["GGGGGG"] - index["AAAAAA"] == 4095 and index["N"] - index["A"] == 4
        opts = _C.Options()
        opts.kmer_offset, opts.base_offset = index["AAAAAA"], index["A"]
        opts.cls_id, opts.pad_id, opts.mask_id = self.cls_id, self.pad_id, self.mask_id
        opts.mode = (_C.Mode.strict if strict else
                     _C.Mode.fold_case_invalid_as_n if invalid == "N" else _C.Mode.fold_case)
        self._options = opts
        self._decoded = np.array(self.vocab, dtype=object)
        self._not_decoded = np.array([index[t] for t in _NOT_DECODED])

    def __repr__(self) -> str:
        return (f"Tokenizer(version={self.version!r}, strict={self.strict}, invalid={self.invalid!r}, "
                f"max_length={self.max_length}, num_threads={self.num_threads})")

    def __reduce__(self):  # picklable for worker processes (the C++ options are rebuilt)
        return (Tokenizer, (self.version, self.strict, self.invalid, self.max_length, self.num_threads))

    @property
    def special_ids(self) -> np.ndarray:
        """Ids of the tokens that are not nucleotides (<unk> <pad> <mask> <cls> <eos> <bos>)."""
        return np.array(sorted({self.unk_id, self.pad_id, self.mask_id, self.cls_id, self.eos_id, self.bos_id}))

    def token_to_id(self, token: str) -> int:
        """Id of a token string; KeyError (official message) if it is not in the vocabulary."""
        try:
            return self._index[token]
        except KeyError:
            raise KeyError(f"Token {token} not found in vocabulary") from None

    def encode(self, seq: SeqLike) -> np.ndarray:
        """Token ids int32 [T] of one sequence, `<cls>` first. Never truncates."""
        return self.encode_with_offsets(seq)[0]

    def encode_with_offsets(self, seq: SeqLike) -> tuple[np.ndarray, np.ndarray]:
        """(ids int32 [T], offsets int64 [T, 2]) of one sequence; seq[start:end] is the token."""
        enc = self._encode([seq], limit=None, padding="longest", truncation=False)
        return enc.ids[0], enc.offsets[0]

    def decode(self, ids: Iterable[int]) -> str:
        """Concatenated token strings of ids [T], skipping <cls> <pad> <eos> <bos>.

        decode(encode(s)) == s.upper() for any valid s in default mode.
        """
        arr = np.asarray(ids)
        if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
            raise ValueError(f"decode expects a 1-D array of int ids, got shape {arr.shape} {arr.dtype}")
        bad = arr[(arr < 0) | (arr >= self.vocab_size)]
        if bad.size:
            raise ValueError(f"token id {int(bad[0])} is out of range [0, {self.vocab_size})")
        keep = arr[~np.isin(arr, self._not_decoded)].astype(np.intp, copy=False)  # [] is float
        return "".join(self._decoded[keep])

    def batch_encode(self, seqs: Sequence[SeqLike], max_length: int | None = None,
                     padding: str = "longest", truncation: bool = False) -> Encoding:
        """Tokenize a batch into padded arrays (C++, threads, GIL released).

        Args:
            seqs: B sequences, each str or bytes.
            max_length: token limit per sequence including `<cls>`; default the
                constructor's max_length. A longer sequence raises ValueError naming its
                index and token count, unless truncation=True (keep the first max_length).
            padding: "longest" (L = longest sequence in the batch) or "max_length"
                (L = max_length, which must then be set).
            truncation: cut sequences longer than max_length instead of raising.
        Returns:
            Encoding(ids int32 [B, L], attention_mask bool [B, L], offsets int64 [B, L, 2]).
        """
        if isinstance(seqs, (str, bytes)):
            raise TypeError("batch_encode expects a list of sequences; use encode() for one sequence")
        limit = self.max_length if max_length is None else max_length
        if limit is not None and (not isinstance(limit, (int, np.integer)) or limit < 1):
            raise ValueError(f"max_length must be a positive int, got {limit!r}")
        if padding not in ("longest", "max_length"):
            raise ValueError(f"padding must be 'longest' or 'max_length', got {padding!r}")
        if limit is None and (padding == "max_length" or truncation):
            what = "padding='max_length'" if padding == "max_length" else "truncation=True"
            raise ValueError(f"{what} needs a max_length (argument or Tokenizer(max_length=...))")
        return self._encode(list(seqs), None if limit is None else int(limit), padding, truncation)

    def count_tokens(self, seqs: Sequence[SeqLike]) -> np.ndarray:
        """Tokens per sequence (int64 [B], `<cls>` included), without building them.

        Validates like `batch_encode` (same errors, naming the sequence's index in `seqs`)
        at a fraction of its cost: what the engine uses to plan batches.
        """
        if isinstance(seqs, (str, bytes)):
            raise TypeError("count_tokens expects a list of sequences")
        return self._count([_as_buffer(s, i) for i, s in enumerate(seqs)], seqs)

    def _count(self, items: list, seqs: Sequence[SeqLike]) -> np.ndarray:
        counts, (code, index, start, end) = _C.count_tokens(items, self._options, self.num_threads)
        if code == _C.StatusCode.invalid_char:
            raise InvalidSequenceError(index, start, _char_at(seqs[index], start))
        if code == _C.StatusCode.unknown_token:
            raise UnknownTokenError(index, start, _token_at(seqs[index], start, end))
        return counts

    def _encode(self, seqs: list, limit: int | None, padding: str, truncation: bool) -> Encoding:
        items = [_as_buffer(s, i) for i, s in enumerate(seqs)]
        counts = self._count(items, seqs)
        if limit is not None and not truncation:
            over = np.flatnonzero(counts > limit)
            if over.size:
                i = int(over[0])
                raise ValueError(f"sequence {i} has {counts[i]} tokens (including <cls>), more than "
                                 f"max_length={limit}; pass truncation=True to keep the first {limit}")
        if padding == "max_length":
            width = limit
        else:
            width = int(counts.max()) if len(items) else 0
            width = width if limit is None else min(width, limit)
        ids = np.empty((len(items), width), dtype=np.int32)
        mask = np.empty((len(items), width), dtype=bool)
        offsets = np.empty((len(items), width, 2), dtype=np.int64)
        if len(items):
            _C.fill_tokens(items, self._options, ids, offsets, mask, self.num_threads)
        return Encoding(ids, mask, offsets)


def _as_buffer(seq, i: int) -> SeqLike:
    """What the C++ core reads: ASCII str as is; other str with each non-ASCII code point
    replaced by '?' (not a base, so it fails or becomes N at the same code-point
    position; messages are then built from the original string); bytes as is."""
    if isinstance(seq, str):
        return seq if seq.isascii() else seq.encode("ascii", "replace")
    if isinstance(seq, bytes):
        return seq
    if isinstance(seq, (bytearray, memoryview)):
        return bytes(seq)
    raise TypeError(f"sequence {i}: expected str or bytes, got {type(seq).__name__}")
