"""What every demo shares (hubgen.demo_utils): how output images reach gradio."""

import os
import time
from pathlib import Path

import pytest
from PIL import Image

from hubgen import demo_utils


def test_demo_event_hands_gradio_each_output_image_as_a_file_of_its_own():
    """gradio writes an image object into its cache under a name made from its bytes, in place, so two requests at
    once with the same output race on one file; demo_event hands it a fresh PNG file per image instead (every output
    of a tuple, every image of a gallery's list), and keeps everything else as it is."""
    image = Image.new("RGB", (8, 6), (10, 200, 30))
    handler = demo_utils.demo_event(lambda: (image, [(image, "caption"), image], "text", 3))
    first, gallery, text, number = handler()
    second = handler()[0]
    assert isinstance(first, str) and first != second  # a file per call, even for the same image
    for path in (first, second, gallery[0][0], gallery[1]):
        with Image.open(path) as served:
            assert served.format == "PNG" and served.convert("RGB").tobytes() == image.tobytes()
    assert gallery[0][1] == "caption" and text == "text" and number == 3
    with pytest.raises(Exception, match="bad seed") as caught:  # a ValueError still reaches the browser as a message
        demo_utils.demo_event(lambda: (_ for _ in ()).throw(ValueError("bad seed")))()
    assert type(caught.value).__name__ == "Error"


def test_served_output_files_are_removed_once_old():
    old = Path(demo_utils.serve_image(Image.new("L", (4, 4))))
    stale = time.time() - demo_utils.SERVED_MAX_AGE_S - 1
    os.utime(old, (stale, stale))
    fresh = Path(demo_utils.serve_image(Image.new("L", (4, 4))))
    assert not old.exists() and fresh.exists() and fresh.parent == old.parent
