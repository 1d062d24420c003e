"""Image features from image files with a pretrained encoder (:mod:`~.image_encoders`, ``bcls features extract``)."""
