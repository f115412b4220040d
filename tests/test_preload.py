"""ui/preload.py: which element code the browser is asked to load ahead of the pages."""

from ui.preload import ELEMENT_CODE, element_code_files


def test_this_streamlit_has_one_code_file_for_every_element_named():
    """A Streamlit release that renames its element files fails here, not silently in the browser."""
    files = element_code_files()
    assert sorted(name.split(".")[0] for name in files) == sorted(ELEMENT_CODE)


def test_only_files_named_element_dot_hash_dot_js_are_taken(tmp_path):
    for name in ("Table.abc.js", "TableChart.esm.def.js", "Metric.x1.js", "Metric.x1.js.map", "embed.q.js",
                 "loadVegaEmbed.z.js", "Checkbox.js"):
        (tmp_path / name).write_text("")
    assert element_code_files(tmp_path) == ("Metric.x1.js", "Table.abc.js", "embed.q.js")
