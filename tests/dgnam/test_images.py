"""dgnam.images: which files are images, listing a folder, a sample spread over it, decoding to RGB."""

import os
import warnings

import numpy as np
import pytest
from PIL import Image

from dgnam.errors import DgnamError
from dgnam.images import IMAGE_SUFFIXES, is_image_name, list_images, load_image, load_images, spread, to_rgb


def test_every_suffix_counts_in_any_case_and_the_empty_folder_error_names_them_all(tmp_path):
    assert all(is_image_name(f"x{s}") and is_image_name(f"X{s.upper()}") for s in IMAGE_SUFFIXES)
    assert not is_image_name("notes.txt") and not is_image_name("png")
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(DgnamError, match="holds no images") as info:
        list_images(tmp_path)
    assert all(s in str(info.value) for s in IMAGE_SUFFIXES)


def test_spread_takes_evenly_spaced_items_over_the_whole_list():
    assert spread(list(range(10)), 5) == [0, 2, 4, 6, 8]
    assert spread(list(range(10)), 3) == [0, 3, 6]
    assert spread(list(range(4)), 10) == [0, 1, 2, 3] and spread(list(range(4)), None) == [0, 1, 2, 3]


def test_load_images_resizes_and_names_an_unreadable_file_in_one_line(tmp_path):
    Image.new("RGB", (8, 4), (255, 0, 0)).save(tmp_path / "red.png")
    images = load_images([tmp_path / "red.png"], 16)
    assert images.shape == (1, 3, 16, 16) and images[0, 0].min() == 1.0 and images[0, 1:].max() == 0.0
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DgnamError, match="bad.jpg") as info:
        load_images([tmp_path / "bad.jpg"], 16)
    assert "\n" not in str(info.value)


def test_empty_or_missing_folder(tmp_path):
    with pytest.raises(DgnamError, match="holds no images"):
        list_images(tmp_path)
    with pytest.raises(DgnamError, match="does not exist"):
        list_images(tmp_path / "nope")


def test_list_images_follows_linked_folders_once_and_opens_only_regular_files(tmp_path):
    elsewhere = tmp_path / "elsewhere" / "cat"
    elsewhere.mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(elsewhere / "0.png")
    data = tmp_path / "data"
    (data / "dog").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(data / "dog" / "0.png")
    (data / "cat").symlink_to(elsewhere)  # a class folder linked in: part of the data
    (data / "dog" / "loop").symlink_to(data)  # a loop ends
    os.mkfifo(data / "dog" / "pipe.jpg")  # opening it would block forever
    (data / "dog" / "gone.png").symlink_to(tmp_path / "missing.png")
    skipped = []
    assert [p.relative_to(data).as_posix() for p in list_images(data, skipped=skipped)] == ["cat/0.png", "dog/0.png"]
    assert [p.relative_to(data).as_posix() for p in skipped] == ["dog/gone.png", "dog/pipe.jpg"]


def test_a_16_bit_greyscale_png_is_read_as_its_grey(tmp_path):
    Image.fromarray(np.full((32, 32), 16384, np.uint16)).save(tmp_path / "deep.png")  # a quarter of 65535
    assert load_image(tmp_path / "deep.png", 32).mean().item() == pytest.approx(64 / 255)


@pytest.mark.parametrize("mode, values, grey", [
    ("I;16", np.full((4, 4), 32768, np.uint16), 128),  # a 16-bit PNG: half of 65535, not clipped to white
    ("I", np.full((4, 4), 65535, np.int32), 255),
    ("F", np.full((4, 4), 0.25, np.float32), 64),  # floats in 0-1
    ("F", np.full((4, 4), 200.0, np.float32), 200),  # floats in 0-255
])
def test_to_rgb_scales_deep_greyscale_from_its_range(mode, values, grey):
    image = Image.fromarray(values, mode) if mode != "I;16" else Image.fromarray(values)
    assert image.mode == mode
    rgb = to_rgb(image)
    assert rgb.mode == "RGB" and np.asarray(rgb).min() == np.asarray(rgb).max() == grey


def test_to_rgb_reads_a_16_bit_png_file_and_a_transparent_palette_without_warnings(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.array([[0, 65535]], np.uint16)).save(path)
    with Image.open(path) as im:
        assert np.asarray(to_rgb(im))[0, :, 0].tolist() == [0, 255]
    palette = Image.new("P", (2, 1))
    palette.putpalette([255, 0, 0, 0, 0, 255])
    palette.putpixel((1, 0), 1)
    palette.info["transparency"] = b"\x00\xff"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.asarray(to_rgb(palette))[0].tolist() == [[255, 0, 0], [0, 0, 255]]
    cmyk = Image.new("CMYK", (1, 1), (0, 255, 255, 0))
    assert np.asarray(to_rgb(cmyk))[0, 0].tolist() == [255, 0, 0]
