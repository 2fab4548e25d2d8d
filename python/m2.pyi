"""Type stubs for the m2 extension module (the Meshed-Memory Transformer captioner)."""

import os
from typing import Dict, List, Optional, Sequence, Tuple, Union, final

import numpy as np
import numpy.typing as npt
from typing_extensions import TypedDict, Unpack

__all__ = ["Model", "pack", "__version__"]
__version__: str

_Path = Union[str, "os.PathLike[str]"]
_Features = npt.NDArray[Union[np.float32, np.float16]]
_Caption = Union[str, Tuple[str, List[int]], Tuple[str, float], Tuple[str, List[int], float]]

class _CaptionOptions(TypedDict, total=False):
    """The keyword options of every caption method."""

    beam: int  # beam size, 1..8 (default 5)
    max_len: int  # decoding steps, 1..model.max_len (default 20)
    greedy: bool  # greedy decoding instead of beam search (default False)
    return_tokens: bool  # also return the word ids, up to and including <eos>
    return_score: bool  # also return the sum of their log-probabilities

@final
class Model:
    """A captioning model: an m2 blob (made by `m2.pack` or `m2-pack`), validated once.

    Errors: `OSError` (`FileNotFoundError`, ...) for files, `ValueError` for a blob that fails
    validation or an unknown `M2_KERNEL`.
    """

    def __new__(cls, path: _Path, mmap: bool = True) -> "Model":
        """Open a blob file: memory-mapped (or read into memory with `mmap=False`).

        A mapped file that another program truncates or rewrites while the model is open is
        read as it changes, or kills the process with SIGBUS; use `mmap=False` for files that
        may change (removable media, shares). m2-pack and `m2.pack` replace blobs atomically,
        which is safe."""
    @staticmethod
    def from_bytes(data: bytes) -> "Model":
        """A model from a blob's bytes (copied, validated)."""
    @property
    def config(self) -> Dict[str, Union[int, float]]:
        """The blob's hyper-parameters: d_in, d_model, h, d_k, d_v, d_ff, n_enc, n_dec, m,
        vocab, pos_rows, max_regions, pad, unk, bos, eos, enc_pad_value."""
    @property
    def d_in(self) -> int:
        """Values per region feature vector."""
    @property
    def max_regions(self) -> int:
        """Most regions per image."""
    @property
    def max_len(self) -> int:
        """Longest caption (words) the positional table allows."""
    @property
    def vocab(self) -> List[str]:
        """The vocabulary, index = token id."""
    @property
    def kernel(self) -> str:
        """The kernel path: scalar, avx2, avxvnni, avx512, neon or dotprod."""
    @property
    def blob_bytes(self) -> int:
        """Bytes of the blob (the weights, read in place)."""
    def memory_plan(
        self, beam: int = 5, max_len: int = 20, regions: Optional[int] = None
    ) -> Dict[str, int]:
        """weights_bytes, workspace_bytes (one caption), beam, regions, max_len."""
    def caption(
        self,
        features: _Features,
        **options: Unpack[_CaptionOptions],
    ) -> _Caption:
        """Caption one image: features [R, d_in] float32/float16, 1 <= R <= max_regions.

        Returns the caption, or (caption, tokens?, score?) with return_tokens / return_score
        (tokens up to and including <eos>; score: the sum of their log-probabilities).
        The GIL is released while the engine runs. ValueError for bad input.
        """
    def caption_batch(
        self,
        features: Union[_Features, Sequence[_Features]],
        threads: Optional[int] = None,
        **options: Unpack[_CaptionOptions],
    ) -> List[_Caption]:
        """Caption many images ([K, R, d_in], or a list of [R, d_in]) on `threads` worker
        threads (default: all cores), GIL released; results in input order. The features are
        copied first (the engine runs without the GIL): pass a large dataset in chunks."""
    def caption_image(
        self,
        image: npt.NDArray[np.uint8],
        **options: Unpack[_CaptionOptions],
    ) -> _Caption:
        """Caption a grayscale uint8 image [H, W] through m2::regions (models trained on its
        72-d region features, such as the bundled demo)."""
    def caption_png(
        self,
        path: _Path,
        **options: Unpack[_CaptionOptions],
    ) -> _Caption:
        """Caption a PNG scene (converted to grayscale) through m2::regions."""
    def score(
        self, features: _Features, tokens: npt.ArrayLike
    ) -> npt.NDArray[np.float32]:
        """Teacher-forced log-probabilities: [R, d_in] and [T] -> [T, V], or [K, R, d_in]
        and [K, T] -> [K, T, V] (as `m2 score`). Tokens: <bos> first, <pad> after."""

def pack(
    checkpoint: _Path,
    vocab: _Path,
    dtype: str,
    out: _Path,
    heads: int = 8,
    regions: int = 50,
    calibrate: Optional[Union[_Path, _Features]] = None,
    readout_dtype: Optional[str] = None,
    damping: float = 0.1,
    threads: Optional[int] = None,
) -> int:
    """Pack a reference checkpoint (safetensors) and vocabulary (JSON list) into a blob at
    `out` (atomically), as m2-pack does; dtype "f32", "f16", "int8" or "int8a16"
    (int8 weights, int16 activations). `calibrate`: features
    [K, R, d_in] (array or .npy path) for GPTQ int8 rounding. Returns the blob's size."""
