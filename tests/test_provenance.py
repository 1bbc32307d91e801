"""What a fingerprint sees of the code: the parsed program, not its comments or docstrings."""

from __future__ import annotations

from tests.conftest import edit
from wss.core import provenance


def write(tmp_path, text):
    path = tmp_path / "m.py"
    path.write_text(text)
    return provenance.normalised_source(path)


def test_comments_docstrings_and_layout_do_not_count(tmp_path):
    base = write(tmp_path, "X = 1\n\n\ndef f(a):\n    return a + X\n")
    assert (
        write(
            tmp_path,
            '"""Module doc."""\n# why X is 1\nX = 1  # one\n\ndef f(a):\n    """Doc."""\n'
            "    return (a +\n            X)\n",
        )
        == base
    )


def test_constants_expressions_and_strings_that_run_do_count(tmp_path):
    base = write(tmp_path, "X = 1\n\ndef f(a):\n    return a + X\n")
    assert write(tmp_path, "X = 2\n\ndef f(a):\n    return a + X\n") != base
    assert write(tmp_path, "X = 1\n\ndef f(a):\n    return a - X\n") != base
    # A string that is not the first statement is code, not a docstring.
    assert write(tmp_path, 'X = 1\n\ndef f(a):\n    print("hi")\n    return a + X\n') != base


def test_digest_follows_the_code_and_the_package_versions(project_copy, monkeypatch):
    before = provenance.code_digest("wss.labels.build", ("numpy",))
    edit(project_copy / "wss/labels/grabcut.py", "import zlib", "import zlib  # for crc32")
    assert provenance.code_digest("wss.labels.build", ("numpy",)) == before
    edit(project_copy / "wss/labels/grabcut.py", "import zlib", "import zlib\nimport json")
    changed = provenance.code_digest("wss.labels.build", ("numpy",))
    assert changed != before
    real = provenance.metadata.version
    monkeypatch.setattr(provenance.metadata, "version", lambda d: "0.1" if d == "numpy" else real(d))
    assert provenance.code_digest("wss.labels.build", ("numpy",)) != changed
    assert provenance.code_digest("wss.labels.build") != changed  # versions of packages not asked for do not count


def test_versions_reads_metadata_and_names_what_is_missing():
    got = provenance.versions("numpy", "opencv", "no-such-package-xyz")
    import cv2
    import numpy

    assert got["numpy"] == numpy.__version__
    assert got["opencv"].split(".")[:2] == cv2.__version__.split(".")[:2]
    assert got["no-such-package-xyz"] == "absent"


def test_the_params_reader_and_the_messages_count_as_data_not_code(project_copy):
    """A new parameter or a reworded message reuses the shards and checkpoints: the values the
    params reader makes are in each fingerprint, not its code."""
    before = provenance.code_digest("wss.labels.build", ())
    edit(project_copy / "wss/config.py", "import re\n", "import re\nimport json\n")
    edit(project_copy / "wss/errors.py", "class WssError(Exception):", "class WssError(Exception):\n    x = 1\n")
    assert provenance.code_digest("wss.labels.build", ()) == before
    assert "wss/config.py" in {str(p) for p in provenance.closure("wss.labels.build")}  # still a dep
    edit(project_copy / "wss/labels/grabcut.py", "import zlib", "import zlib\nimport json")
    assert provenance.code_digest("wss.labels.build", ()) != before
