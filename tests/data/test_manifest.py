"""The one manifest reader every stage uses: rows keep their line, and bad rows are one-line errors naming it."""

from __future__ import annotations

import pytest
from PIL import Image

from aesthetic_llm.data.manifest import open_images, read_manifest
from aesthetic_llm.errors import UserError


def _write(path, lines):
    path.write_text("\n".join(["image_id,path,mos,split", *lines]) + "\n")
    return path


def test_rows_keep_their_values_and_lines(tmp_path):
    m = _write(tmp_path / "m.csv", ["a,x.jpg,5.25,test", '"b","y.jpg",7,test'])
    rows = read_manifest(m)
    assert [(r.image_id, r.path, r.mos, r.mos_text, r.line) for r in rows] == [
        ("a", "x.jpg", 5.25, "5.25", 2),
        ("b", "y.jpg", 7.0, "7", 3),
    ]
    assert rows[1].where() == f"{m}:3"


@pytest.mark.parametrize(
    "bad, message",
    [
        ("c,z.jpg,high,test", ":4: mos: expected a number, got 'high'"),
        ("c,z.jpg,nan,test", ":4: mos: expected a number, got 'nan'"),
        ("a,z.jpg,3,test", ":4: duplicate image_id a"),
        (",z.jpg,3,test", ":4: image_id: empty"),
    ],
)
def test_bad_row_names_its_line(tmp_path, bad, message):
    m = _write(tmp_path / "m.csv", ["a,x.jpg,5,test", "b,y.jpg,6,test", bad])
    with pytest.raises(UserError) as err:
        read_manifest(m)
    assert str(err.value) == f"{m}{message}"


def test_line_counts_quoted_newlines(tmp_path):
    """A quoted field spanning two lines moves every later row down one line: errors must follow."""
    m = _write(tmp_path / "m.csv", ['a,"x\ny.jpg",5,test', "b,z.jpg,bad,test"])
    with pytest.raises(UserError, match=r":4: mos"):
        read_manifest(m)


def test_missing_column_and_missing_file(tmp_path):
    m = tmp_path / "m.csv"
    m.write_text("image_id,mos\na,5\n")
    with pytest.raises(UserError, match=r"missing column\(s\) path"):
        read_manifest(m)
    with pytest.raises(UserError, match="file not found"):
        read_manifest(tmp_path / "none.csv")


def test_unreadable_image_in_a_later_batch_names_its_own_line(tmp_path):
    lines = []
    for i in range(6):
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(tmp_path / f"{i}.png")
        lines.append(f"i{i},{tmp_path / f'{i}.png'},5,test")
    (tmp_path / "4.png").write_bytes(b"not a png")
    rows = read_manifest(_write(tmp_path / "m.csv", lines))
    assert len(open_images(rows[:3])) == 3
    with pytest.raises(UserError, match=r"m\.csv:6: cannot read image .*4\.png"):
        open_images(rows[3:])
