"""Images and the catalog: finding, verifying, loading and sampling them (see ``catalog.csv``)."""
from .catalog import (
    CatalogEntry, ChecksumMismatch, DataNotFound, get_entry, load_catalog, named_set, sha256_file,
)
from .images import (
    ImageLoadError, LoadedImage, WorkingImage, as_pil, load_image, pil_to_tensor, tensor_to_pil,
    to_uint8_grid, working_image,
)

__all__ = [
    "CatalogEntry", "ChecksumMismatch", "DataNotFound", "get_entry", "load_catalog", "named_set",
    "sha256_file", "ImageLoadError", "LoadedImage", "WorkingImage", "as_pil", "load_image",
    "pil_to_tensor", "tensor_to_pil", "to_uint8_grid", "working_image",
]
from .dataset import ArtworkCrops, eval_batch, random_crop  # noqa: E402

__all__ += ["ArtworkCrops", "eval_batch", "random_crop"]
