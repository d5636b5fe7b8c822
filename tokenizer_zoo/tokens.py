"""Token files: datasets of image tokens on disk, compact and self-describing (safetensors).

    save_tokens("tokens.safetensors", pipe.encode(images).indices, pipe.quantizer, pipe.image_size,
                preset="flowmo_lo", names=["a.png", "b.png"])
    tokens = load_tokens("tokens.safetensors", expect=pipe)   # TokenFile; raises if pipe did not make them
    images = pipe.decode(tokens.indices).images

Format ``tokenizer-zoo-tokens``, version 1: one safetensors file holding exactly one tensor.

* Binary quantizers (LFQ and its subclasses, e.g. the ``bsq`` plugin): tensor ``bits``, uint8,
  shape ``(ceil(N * S * d / 8),)``. It is the stream of all bits, image after image, token after
  token, code channel after code channel (channel j of a token is bit j of its code: 1 for +, 0
  for -; within a group of k channels the first is the most significant bit of the index, as in
  :mod:`tokenizer_zoo.quantizers.lfq`), packed eight to a byte with the first bit in the most
  significant position (``numpy.packbits`` order); the last byte is padded with zeros. N images of
  S tokens of d bits take ``ceil(N * S * d / 8)`` bytes: the bit rate of the tokenizer exactly.
* Every other quantizer (FSQ, VQ, ...): tensor ``indices`` of shape ``(N, *token_shape)`` in the
  smallest unsigned integer type that holds ``vocab_size - 1`` (U8, U16, U32 or U64).
* String metadata (the safetensors header), all values strings:

  ================== ==================================================================
  ``format``         ``tokenizer-zoo-tokens``
  ``format_version`` ``1``
  ``encoding``       ``packed_bits`` or ``indices`` (which tensor is present)
  ``quantizer``      registry name of the quantizer (``lfq``, ``fsq``, ``bsq``, ...)
  ``quantizer_class`` its ``module.QualName``
  ``quantizer_config`` JSON of its config (diffusers' private ``_`` keys left out)
  ``bits_per_token`` float, bits of one token (``d`` for binary quantizers)
  ``bits_per_group`` binary quantizers only: ``k``, bits of one index
  ``vocab_size``     number of distinct values of one index
  ``token_shape``    JSON list ``[S]`` or ``[S, G]``: the shape of one image's indices
  ``image_size``     side in pixels of the images the tokens were made from
  ``num_images``     ``N``
  ``preset``         optional: the preset name of the tokenizer
  ``names``          optional: JSON list of N per-image names (file names relative to the folder
                     encoded; never absolute paths)
  ``labels``         optional: JSON list of N integer class labels (for class-conditional models)
  ================== ==================================================================

Files are written atomically (to a temporary file in the same folder, then renamed), so an
interrupted or failed write never leaves a broken file in place of an existing one.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Sequence

import numpy as np
import torch
from safetensors.numpy import load as safetensors_load
from safetensors.numpy import save as safetensors_save

from tokenizer_zoo.quantizers.lfq import LFQuantizer, bits_to_indices, indices_to_bits
from tokenizer_zoo.registry import QUANTIZERS

FORMAT_NAME = "tokenizer-zoo-tokens"
FORMAT_VERSION = 1
PACKED_BITS, INDICES = "packed_bits", "indices"
_REQUIRED = ("format_version", "encoding", "quantizer", "quantizer_config", "bits_per_token", "vocab_size",
             "token_shape", "image_size", "num_images")
_UNSIGNED = (np.uint8, np.uint16, np.uint32, np.uint64)


class TokenFileError(ValueError):
    """A file that is not a readable token file, or tokens that cannot be written to one."""


class TokenMismatchError(ValueError):
    """A token file made by another tokenizer than the one it is used with."""


@dataclass(frozen=True)
class TokenizerSignature:
    """What must agree between a token file and the tokenizer that decodes it (None: unknown, not compared)."""

    quantizer: str
    quantizer_config: dict[str, Any]
    bits_per_token: float
    token_shape: tuple[int, ...] | None
    image_size: int | None

    def describe(self) -> str:
        config = json.dumps(self.quantizer_config, sort_keys=True)
        shape = "?" if self.token_shape is None else "x".join(map(str, self.token_shape))
        size = "?" if self.image_size is None else f"{self.image_size} px"
        return f"{self.quantizer} {config}, {self.bits_per_token:g} bits/token, tokens {shape}, images {size}"

    def differences(self, other: "TokenizerSignature") -> list[str]:
        """Names of the fields that differ where both sides know them."""
        found = []
        if self.quantizer != other.quantizer:
            found.append("quantizer")
        if self.quantizer_config != other.quantizer_config:
            found.append("quantizer config")
        if not math.isclose(self.bits_per_token, other.bits_per_token, rel_tol=1e-9):
            found.append("bits per token")
        if _differs(self.token_shape, other.token_shape):
            found.append("token shape")
        if _differs(self.image_size, other.image_size):
            found.append("image size")
        return found


def _differs(a, b) -> bool:
    return a is not None and b is not None and a != b


@dataclass
class TokenFile:
    """A loaded token file: int64 ``indices`` (N, *token_shape) and what made them."""

    indices: torch.Tensor
    signature: TokenizerSignature
    vocab_size: int
    preset: str | None
    names: list[str] | None
    format_version: int
    path: Path | None = None
    labels: list[int] | None = None

    def __len__(self) -> int:
        return self.indices.shape[0]

    @property
    def image_size(self) -> int:
        return self.signature.image_size

    @property
    def token_shape(self) -> tuple[int, ...]:
        return self.signature.token_shape

    @property
    def quantizer_name(self) -> str:
        return self.signature.quantizer

    def build_quantizer(self) -> torch.nn.Module:
        """The quantizer that made the tokens, rebuilt from its registry name and config."""
        return QUANTIZERS.build(self.signature.quantizer, **self.signature.quantizer_config)


# --- describing tokenizers ------------------------------------------------------------------------
def _is_binary(quantizer) -> bool:
    return isinstance(quantizer, LFQuantizer)


def _public_config(quantizer) -> dict[str, Any]:
    config = {key: value for key, value in dict(quantizer.config).items() if not key.startswith("_")}
    return json.loads(json.dumps(config))  # tuples -> lists, as they come back from a file


def _quantizer_name(quantizer) -> str:
    return QUANTIZERS.name_of(type(quantizer)) or f"{type(quantizer).__module__}.{type(quantizer).__qualname__}"


def _vocab_size(quantizer) -> int:
    try:
        return int(quantizer.vocab_size)
    except (TypeError, AttributeError) as error:  # continuous codes raise NoBitRateError (a TypeError)
        raise TokenFileError(
            f"{type(quantizer).__name__} has no token ids (its codes are continuous), so there is nothing to "
            "store in a token file; save the codes themselves (e.g. with safetensors.torch.save_file), or use a "
            "discrete quantizer (lfq, fsq, vq, ...)."
        ) from error


def signature_of(tokenizer, token_shape: tuple[int, ...] | None = None,
                 image_size: int | None = None) -> TokenizerSignature:
    """The signature of a quantizer or of a pipeline (which also knows its image size and token count)."""
    quantizer = getattr(tokenizer, "quantizer", tokenizer)
    _vocab_size(quantizer)
    if token_shape is None:
        trailing = (quantizer.config.dim // quantizer.config.bits_per_group,) if _is_binary(quantizer) else ()
        positions = round(quantizer.bits_per_token / math.log2(_vocab_size(quantizer)))
        if not trailing and positions > 1:  # several ids per token (residual levels, groups): (S, P)
            trailing = (positions,)
        encoder_config = getattr(getattr(tokenizer, "encoder", None), "config", {})
        code_length = encoder_config.get("code_length") if hasattr(encoder_config, "get") else None
        token_shape = (int(code_length), *trailing) if code_length is not None else None
    if image_size is None and quantizer is not tokenizer:
        image_size = getattr(tokenizer, "image_size", None)
    return TokenizerSignature(
        quantizer=_quantizer_name(quantizer),
        quantizer_config=_public_config(quantizer),
        bits_per_token=float(quantizer.bits_per_token),
        token_shape=None if token_shape is None else tuple(int(n) for n in token_shape),
        image_size=None if image_size is None else int(image_size),
    )


# --- writing --------------------------------------------------------------------------------------
def _check_indices(indices: torch.Tensor, quantizer, vocab_size: int) -> None:
    if not isinstance(indices, torch.Tensor):
        raise TokenFileError(f"indices must be a torch.Tensor, got {type(indices).__name__}")
    if indices.is_floating_point() or indices.is_complex() or indices.dtype == torch.bool:
        raise TokenFileError(f"indices must be integer token ids, got dtype {indices.dtype} (codes, not ids?)")
    if indices.ndim not in (2, 3):
        raise TokenFileError(f"indices must have shape (N, S) or (N, S, G), got {tuple(indices.shape)}")
    if _is_binary(quantizer):
        groups = quantizer.config.dim // quantizer.config.bits_per_group
        if indices.ndim != 3 or indices.shape[2] != groups:
            raise TokenFileError(f"{type(quantizer).__name__} (dim {quantizer.config.dim}, bits_per_group "
                                 f"{quantizer.config.bits_per_group}) makes indices (N, S, {groups}); "
                                 f"got shape {tuple(indices.shape)}")
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= vocab_size):
        raise TokenFileError(f"indices lie in [{int(indices.min())}, {int(indices.max())}] but the vocabulary of "
                             f"{type(quantizer).__name__} is [0, {vocab_size - 1}]; "
                             "were they made by another quantizer?")


def _portable_name(name) -> str:
    """``name`` as stored: an absolute path keeps only its file name, so shared files do not reveal directories."""
    windows = PureWindowsPath(str(name))  # splits POSIX paths too; knows drive letters and UNC
    return windows.name if PurePosixPath(str(name)).is_absolute() or windows.is_absolute() else str(name)


def _smallest_unsigned(vocab_size: int):
    return next(dtype for dtype in _UNSIGNED if vocab_size - 1 <= np.iinfo(dtype).max)


def write_atomically(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save_tokens(path: str | os.PathLike, indices: torch.Tensor, quantizer, image_size: int,
                preset: str | None = None, names: Sequence[str] | None = None,
                labels: Sequence[int] | None = None) -> Path:
    """Write token ids ``indices`` (N, S) or (N, S, G) made by ``quantizer`` to a token file at ``path``.

    ``quantizer`` may also be a pipeline (its ``.quantizer`` is used). ``image_size`` is the side of
    the images the tokens encode; ``preset`` the tokenizer's preset name if known; ``names`` one
    string per image (an absolute path is stored as its file name); ``labels`` one integer class
    label per image. Raises :class:`TokenFileError` for continuous quantizers and for ids that do
    not fit the quantizer.
    """
    quantizer = getattr(quantizer, "quantizer", quantizer)
    vocab_size = _vocab_size(quantizer)
    _check_indices(indices, quantizer, vocab_size)
    count = indices.shape[0]
    if names is not None:
        names = [_portable_name(name) for name in names]
        if len(names) != count:
            raise TokenFileError(f"got {len(names)} names for {count} images; give one name per image or none")
    if labels is not None:
        labels = [int(label) for label in labels]
        if len(labels) != count:
            raise TokenFileError(f"got {len(labels)} labels for {count} images; give one label per image or none")
    signature = signature_of(quantizer, token_shape=tuple(indices.shape[1:]), image_size=image_size)
    metadata = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "quantizer": signature.quantizer,
        "quantizer_class": f"{type(quantizer).__module__}.{type(quantizer).__qualname__}",
        "quantizer_config": json.dumps(signature.quantizer_config, sort_keys=True),
        "bits_per_token": repr(signature.bits_per_token),
        "vocab_size": str(vocab_size),
        "token_shape": json.dumps(list(signature.token_shape)),
        "image_size": str(int(image_size)),
        "num_images": str(count),
    }
    indices = indices.detach().cpu()
    if _is_binary(quantizer):
        k = quantizer.config.bits_per_group
        metadata.update(encoding=PACKED_BITS, bits_per_group=str(k))
        bits = indices_to_bits(indices.long(), k).numpy().astype(np.uint8)
        tensors = {PACKED_BITS: np.packbits(bits.reshape(-1))}
    else:
        metadata["encoding"] = INDICES
        tensors = {INDICES: indices.numpy().astype(_smallest_unsigned(vocab_size))}
    if preset is not None:
        metadata["preset"] = str(preset)
    if names is not None:
        metadata["names"] = json.dumps(names)
    if labels is not None:
        metadata["labels"] = json.dumps(labels)
    return write_atomically(path, safetensors_save(tensors, metadata=metadata))


# --- reading --------------------------------------------------------------------------------------
def _read(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TokenFileError(f"token file {path} does not exist") from None
    except OSError as error:
        raise TokenFileError(f"cannot read token file {path}: {error}") from error
    try:
        tensors = safetensors_load(data)
        header_size = int.from_bytes(data[:8], "little")
        metadata = json.loads(data[8:8 + header_size]).get("__metadata__") or {}
    except Exception as error:  # safetensors raises its own error types, numpy and json theirs
        raise TokenFileError(f"{path} is not a readable safetensors file (corrupt or truncated?): "
                             f"{type(error).__name__}: {error}") from error
    return tensors, metadata


def _parse(path: Path, metadata: dict[str, str]) -> dict[str, Any]:
    if metadata.get("format") != FORMAT_NAME:
        raise TokenFileError(f"{path} is a safetensors file but not a {FORMAT_NAME} file (its metadata format is "
                             f"{metadata.get('format')!r}); make token files with `tokenizer-zoo encode` "
                             "or save_tokens()")
    missing = [key for key in _REQUIRED if key not in metadata]
    if missing:
        raise TokenFileError(f"token file {path} lacks the metadata {missing}; the file is damaged")
    try:
        fields = {
            "format_version": int(metadata["format_version"]),
            "encoding": metadata["encoding"],
            "quantizer_config": json.loads(metadata["quantizer_config"]),
            "bits_per_token": float(metadata["bits_per_token"]),
            "vocab_size": int(metadata["vocab_size"]),
            "token_shape": tuple(int(n) for n in json.loads(metadata["token_shape"])),
            "image_size": int(metadata["image_size"]),
            "num_images": int(metadata["num_images"]),
            "bits_per_group": int(metadata["bits_per_group"]) if "bits_per_group" in metadata else None,
            "names": json.loads(metadata["names"]) if "names" in metadata else None,
            "labels": [int(v) for v in json.loads(metadata["labels"])] if "labels" in metadata else None,
        }
    except (ValueError, TypeError) as error:
        raise TokenFileError(f"token file {path} has malformed metadata: {error}") from error
    if fields["format_version"] > FORMAT_VERSION:
        raise TokenFileError(f"token file {path} has format version {fields['format_version']}; this tokenizer-zoo "
                             f"reads up to version {FORMAT_VERSION}. Upgrade tokenizer-zoo.")
    if fields["names"] is not None and len(fields["names"]) != fields["num_images"]:
        raise TokenFileError(f"token file {path} lists {len(fields['names'])} names for {fields['num_images']} images")
    if fields["labels"] is not None and len(fields["labels"]) != fields["num_images"]:
        raise TokenFileError(f"token file {path} lists {len(fields['labels'])} labels for {fields['num_images']} images")
    return fields


def _unpack_bits(path: Path, packed: np.ndarray, fields: dict[str, Any]) -> torch.Tensor:
    k, shape, count = fields["bits_per_group"], fields["token_shape"], fields["num_images"]
    if k is None or len(shape) != 2:
        raise TokenFileError(f"token file {path}: packed bits need bits_per_group and a token shape [S, G]")
    total = count * math.prod(shape) * k
    if packed.dtype != np.uint8 or packed.shape != (math.ceil(total / 8),):
        raise TokenFileError(f"token file {path}: tensor {PACKED_BITS} is {packed.dtype} {packed.shape}, expected "
                             f"uint8 ({math.ceil(total / 8)},) for {count} images of {shape} x {k} bits")
    bits = np.unpackbits(packed, count=total).reshape(count, shape[0], shape[1] * k)
    return bits_to_indices(torch.from_numpy(bits.astype(np.int64)), k)


def _as_indices(path: Path, array: np.ndarray, fields: dict[str, Any]) -> torch.Tensor:
    expected = (fields["num_images"], *fields["token_shape"])
    if array.dtype.type not in _UNSIGNED or array.shape != expected:
        raise TokenFileError(f"token file {path}: tensor {INDICES} is {array.dtype} {array.shape}, expected "
                             f"unsigned integers of shape {expected}")
    if array.size and int(array.max()) >= fields["vocab_size"]:
        raise TokenFileError(f"token file {path}: ids up to {int(array.max())} exceed the vocabulary "
                             f"[0, {fields['vocab_size'] - 1}]")
    return torch.from_numpy(array.astype(np.int64))


def load_tokens(path: str | os.PathLike, expect=None) -> TokenFile:
    """Read a token file; with ``expect`` (a quantizer or a pipeline), check that it made the tokens.

    Raises :class:`TokenFileError` for missing, corrupt or non-token files and
    :class:`TokenMismatchError` (naming both tokenizers) when ``expect`` differs from the file's
    tokenizer in quantizer, quantizer config, bits per token, token shape or image size.
    """
    path = Path(path)
    tensors, metadata = _read(path)
    fields = _parse(path, metadata)
    if set(tensors) != {fields["encoding"]}:
        raise TokenFileError(f"token file {path} holds tensors {sorted(tensors)}; its encoding "
                             f"{fields['encoding']!r} needs exactly one tensor of that name")
    unpack = {PACKED_BITS: _unpack_bits, INDICES: _as_indices}.get(fields["encoding"])
    if unpack is None:
        raise TokenFileError(f"token file {path} has unknown encoding {fields['encoding']!r}")
    signature = TokenizerSignature(metadata["quantizer"], fields["quantizer_config"], fields["bits_per_token"],
                                   fields["token_shape"], fields["image_size"])
    if expect is not None:
        check_compatible(signature, signature_of(expect), source=str(path))
    return TokenFile(indices=unpack(path, tensors[fields["encoding"]], fields), signature=signature,
                     vocab_size=fields["vocab_size"], preset=metadata.get("preset"), names=fields["names"],
                     format_version=fields["format_version"], path=path, labels=fields["labels"])


def check_compatible(made_by: TokenizerSignature, used_with: TokenizerSignature, source: str = "the tokens") -> None:
    """Raise :class:`TokenMismatchError` when tokens made by ``made_by`` cannot be decoded by ``used_with``."""
    differences = made_by.differences(used_with)
    if differences:
        raise TokenMismatchError(
            f"{source} was made by another tokenizer (different {', '.join(differences)}): token file: "
            f"{made_by.describe()}; model: {used_with.describe()}. Decode it with the model that encoded it, "
            "or re-encode the images with this model."
        )
