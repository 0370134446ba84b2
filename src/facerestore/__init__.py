"""facerestore: self-hosted AI face restoration.

from facerestore import Restorer, RestoreOptions, load_image, save_image
result = Restorer(RestoreOptions(scale=2)).restore(load_image("old.jpg"))
save_image(result.picture, "restored/old.jpg")
"""

from facerestore.detection import DetectionOptions, Face
from facerestore.errors import FaceRestoreError, ImageError, ModelError, OptionError
from facerestore.image_io import (
    Picture,
    decode_image,
    encode_image,
    load_image,
    picture_from_array,
    save_image,
)
from facerestore.pipeline import RestoredFace, RestoreOptions, Restorer, RestoreResult

__all__ = [
    "DetectionOptions",
    "Face",
    "FaceRestoreError",
    "ImageError",
    "ModelError",
    "OptionError",
    "Picture",
    "RestoreOptions",
    "RestoreResult",
    "RestoredFace",
    "Restorer",
    "decode_image",
    "encode_image",
    "load_image",
    "picture_from_array",
    "save_image",
]
__version__ = "0.1.0"
